"""Plots of ensemble evaluations: the size curve and the reliability diagram.

Each returns its matplotlib ``Figure`` (shown inline in a notebook), draws into ``ax`` when
given, and writes a file only when given a ``path`` (PNG, or the format its extension names).
"""

import numpy as np
import pandas as pd

from ensembles import metrics
from safeio import new_axes, save_figure
from safeio.checks import UserError


def plot_size_curve(curve, path=None, title="Ensemble size", ax=None):
    """Top-1 error and NLL against the number of members (``size_curve``'s table).

    Example:

    >>> fig = plot_size_curve(ensembles.size_curve(model, test))       # doctest: +SKIP
    """
    columns = getattr(curve, "columns", ())
    if not isinstance(curve, pd.DataFrame) or not {"top1_error", "nll"} <= set(columns):
        shown = "" if isinstance(curve, (pd.DataFrame, pd.Series)) else f" {curve!r:.60}"
        raise UserError(f"plot_size_curve takes size_curve's table (a DataFrame with "
                        f"top1_error and nll per member count); received "
                        f"{type(curve).__name__}" + (f" with columns {list(columns)}"
                                                      if len(columns) else shown) + ".")
    if curve.empty:  # (a blank figure was drawn and saved)
        raise UserError("plot_size_curve received a table of no rows: size_curve's has one "
                        "per member count.")
    fig, err_ax = new_axes(ax)
    err_ax.plot(curve.index, 100 * curve["top1_error"], "o-", color="tab:blue")
    err_ax.set(xlabel="members", ylabel="top-1 error (%)", title=title)
    err_ax.set_xticks(list(curve.index))
    nll_ax = err_ax.twinx()
    nll_ax.plot(curve.index, curve["nll"], "s--", color="tab:red")
    nll_ax.set_ylabel("NLL", color="tab:red")
    err_ax.grid(alpha=0.3)
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_reliability(probs, labels, path=None, title="Reliability", bins=15, ax=None):
    """Accuracy against confidence in ``bins`` equal-width bins, with the ECE in the title.

    Example:

    >>> fig = plot_reliability(probs, labels, "reliability.png")       # doctest: +SKIP
    """
    rows = metrics.calibration_bins(probs, labels, bins)
    centres = (np.arange(bins) + 0.5) / bins
    accuracy = [acc if count else 0.0 for _, acc, count in rows]
    fig, ax = new_axes(ax, figsize=(4.5, 4.5))
    ax.bar(centres, accuracy, width=1.0 / bins, edgecolor="black", alpha=0.7, label="accuracy")
    ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    ax.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
           title=f"{title} (ECE {100 * metrics.ece(probs, labels, bins):.2f} %)")
    ax.legend(loc="upper left")
    if path is not None:
        save_figure(fig, path)
    return fig
