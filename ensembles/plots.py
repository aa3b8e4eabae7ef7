"""PNG plots of ensemble evaluations: the size curve and the reliability diagram."""

import numpy as np

from ensembles import metrics
from zoo._io import save_figure


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_size_curve(curve, path, title="Ensemble size"):
    """Top-1 error and NLL against the number of members (``size_curve``'s table)."""
    plt = _pyplot()
    fig, err_ax = plt.subplots(figsize=(5.5, 4))
    err_ax.plot(curve.index, 100 * curve["top1_error"], "o-", color="tab:blue")
    err_ax.set(xlabel="members", ylabel="top-1 error (%)", title=title)
    err_ax.set_xticks(list(curve.index))
    nll_ax = err_ax.twinx()
    nll_ax.plot(curve.index, curve["nll"], "s--", color="tab:red")
    nll_ax.set_ylabel("NLL", color="tab:red")
    err_ax.grid(alpha=0.3)
    save_figure(fig, path)


def plot_reliability(probs, labels, path, title="Reliability", bins=15):
    """Accuracy against confidence in ``bins`` equal-width bins, with the ECE in the title."""
    plt = _pyplot()
    rows = metrics.calibration_bins(probs, labels, bins)
    centres = (np.arange(bins) + 0.5) / bins
    accuracy = [acc if count else 0.0 for _, acc, count in rows]
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.bar(centres, accuracy, width=1.0 / bins, edgecolor="black", alpha=0.7, label="accuracy")
    ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    ax.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
           title=f"{title} (ECE {100 * metrics.ece(probs, labels, bins):.2f} %)")
    ax.legend(loc="upper left")
    save_figure(fig, path)
