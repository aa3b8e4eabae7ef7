"""Classification, calibration, diversity and uncertainty measures on probability arrays.

Plain NumPy on ``probs`` of shape (n, classes) or, for members, (members, n, classes).
"""

import numpy as np

EPS = 1e-12


def top_k_error(probs, labels, k=1):
    """Fraction of examples whose label is not among the ``k`` most probable classes."""
    k = min(k, probs.shape[-1])
    top = np.argsort(-probs, axis=-1)[:, :k]
    return float(1.0 - np.mean(np.any(top == labels[:, None], axis=1)))


def nll(probs, labels):
    """Mean negative log-likelihood of the labels."""
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], EPS, 1.0))))


def brier(probs, labels):
    """Mean squared distance between the probabilities and the one-hot labels (summed over
    classes)."""
    onehot = np.eye(probs.shape[-1])[labels]
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=-1)))


def calibration_bins(probs, labels, bins=15):
    """Per equal-width confidence bin: (mean confidence, accuracy, count)."""
    confidence = probs.max(axis=-1)
    correct = probs.argmax(axis=-1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows = []
    for b in range(bins):
        mask = index == b
        rows.append((confidence[mask].mean() if mask.any() else np.nan,
                     correct[mask].mean() if mask.any() else np.nan, int(mask.sum())))
    return rows


def ece(probs, labels, bins=15):
    """Expected calibration error with ``bins`` equal-width confidence bins."""
    total = len(labels)
    return float(sum(count / total * abs(conf - acc)
                     for conf, acc, count in calibration_bins(probs, labels, bins) if count))


def scores(probs, labels):
    """The table's columns for one set of predictions."""
    return {"top1_error": top_k_error(probs, labels, 1),
            "top5_error": top_k_error(probs, labels, 5),
            "nll": nll(probs, labels), "brier": brier(probs, labels), "ece": ece(probs, labels)}


def disagreement(member_probs):
    """Mean over member pairs of the fraction of examples where their top classes differ."""
    tops = member_probs.argmax(axis=-1)
    m = len(tops)
    pairs = [(i, j) for i in range(m) for j in range(i + 1, m)]
    return float(np.mean([np.mean(tops[i] != tops[j]) for i, j in pairs])) if pairs else 0.0


def average_kl(member_probs):
    """Mean over ordered member pairs (i != j) of KL(p_i || p_j), averaged over examples."""
    p = np.clip(member_probs, EPS, 1.0)
    m = len(p)
    values = [np.mean(np.sum(p[i] * (np.log(p[i]) - np.log(p[j])), axis=-1))
              for i in range(m) for j in range(m) if i != j]
    return float(np.mean(values)) if values else 0.0


def entropy(probs):
    """Entropy (nats) of each row of ``probs``."""
    p = np.clip(probs, EPS, 1.0)
    return -np.sum(p * np.log(p), axis=-1)
