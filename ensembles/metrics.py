"""Classification, calibration, diversity and uncertainty measures on probability arrays.

Plain NumPy on ``probs`` of shape (n, classes) or, for members, (members, n, classes).
"""

import numpy as np

from safeio.checks import UserError, check_positive_int, widened_ml_floats

EPS = 1e-12


def class_labels(labels, classes):
    """``labels`` as class indices shaped ``(n,)``: integers in ``[0, classes)``, given as
    ``(n,)`` or ``(n, 1)`` (Keras' sparse labels, as ``keras.datasets.cifar10`` returns
    them). One-hot or soft labels, and labels out of range, are refused in one line.

    Example:

    >>> class_labels(np.array([[2], [0]]), classes=3)
    array([2, 0])
    """
    labels = np.asarray(labels)
    if labels.dtype.kind not in "biuf":
        raise UserError(f"Labels must be class indices (integers); received {labels.dtype} "
                        "values: map the names to their indices first.")
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        hint = (" (one-hot? take np.argmax(labels, axis=-1))"
                if labels.ndim == 2 and labels.shape[1] == classes else "")
        raise UserError(f"Labels must be class indices shaped (n,) or (n, 1); received shape "
                        f"{labels.shape}{hint}.")
    if labels.size and not np.isfinite(labels).all():  # (inf was "received -9223372036854775808")
        raise UserError(f"Labels must be finite class indices; received "
                        f"{labels[~np.isfinite(labels)][0]}.")
    if labels.size and not np.array_equal(labels, np.round(labels)):
        raise UserError(f"Labels must be whole class indices; received values such as "
                        f"{float(labels[labels != np.round(labels)][0]):g}.")
    # The range before the cast to int: 1e20 and uint64's 2**63 wrapped to negative numbers.
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise UserError(f"Labels must lie in [0, {classes}) for {classes} classes; received "
                        f"{int(labels.min())}..{int(labels.max())}.")
    return labels.astype(int)


def float_array(values, what="probabilities"):
    """``values`` as a float array: integers as float64, float16 and ml_dtypes' bfloat16
    (what ``mixed_bfloat16`` models predict) as float32, float32 and float64 as they are;
    anything else (complex, objects, strings) is one line.

    Example:

    >>> float_array([[0, 1]]).dtype
    dtype('float64')
    """
    values = widened_ml_floats(np.asarray(values))
    if values.dtype.kind not in "biuf":  # (complex: the imaginary part dropped; objects)
        raise UserError(f"Expected {what}: real numbers; received {values.dtype} values.")
    if values.dtype.kind != "f":  # (float32 stays float32: ImageNet's are 200 MB a member)
        return values.astype("float64")
    if values.dtype.itemsize < 4:  # float16: its 1e-12 floors would round to 0 (log: -inf)
        return values.astype("float32")
    return values


def stacked_members(member_probs, names=None, what="member probabilities"):
    """The members' probability arrays as one array (members first); members of different
    shapes (another number of classes, of examples) are one line naming each shape, not
    NumPy's "inhomogeneous shape".

    Example:

    >>> stacked_members([[[0.5, 0.5]], [[1.0, 0.0]]]).shape
    (2, 1, 2)
    """
    if isinstance(member_probs, (list, tuple)) and member_probs:
        shapes = [np.shape(p) for p in member_probs]
        if len(set(shapes)) > 1:
            names = names if names is not None and len(names) == len(shapes) else range(
                len(shapes))
            listed = ", ".join(f"{name}: {shape}" for name, shape in zip(names, shapes))
            raise UserError(f"Expected {what} of one shape (the same examples and classes); "
                            f"received {listed}.")
    return np.asarray(member_probs)


def check_probabilities(probs, labels=None, what="probabilities"):
    """``probs`` as a float array (float32 or float64), checked to hold probabilities:
    finite, in [0, 1], each row summing to 1 (to 1e-2: float16 and bfloat16 outputs
    round); shaped ``(len(labels), classes)`` where ``labels`` are given. Logits, NaN and
    rows that are not distributions are refused in one line, where each metric would return
    a number that means nothing (a temperature of 36 fitted to logits, NaN's greedy
    selection).

    Example:

    >>> check_probabilities([[0.25, 0.75]]).shape
    (1, 2)
    """
    probs = float_array(probs, what)
    if labels is not None and (probs.ndim != 2 or len(probs) != len(labels)):
        raise UserError(f"Expected {what} shaped ({len(labels)}, classes) for {len(labels)} "
                        f"labels; received shape {probs.shape}.")
    if labels is not None and not len(labels):  # every score of none would be NaN, ECE 0
        raise UserError(f"Expected {what} of at least one example; received none (an empty "
                        "split?).")
    if not probs.size:
        return probs
    rows = probs.reshape(-1, probs.shape[-1])
    bad = ~np.isfinite(rows).all(axis=-1)
    if bad.any():
        raise UserError(f"Expected {what}; received NaN or infinite values in "
                        f"{int(bad.sum())} of {len(rows)} rows (the first: row "
                        f"{int(np.flatnonzero(bad)[0])}).")
    sums = rows.sum(axis=-1)
    if rows.min() < 0 or rows.max() > 1 + 1e-6 or np.abs(sums - 1).max() > 1e-2:
        hint = (" (logits? apply a softmax first)" if rows.min() < 0 or rows.max() > 1
                else "")
        raise UserError(f"Expected {what}: values in [0, 1], each row summing to 1; received "
                        f"values in [{rows.min():.3g}, {rows.max():.3g}], rows summing to "
                        f"{sums.min():.3g}..{sums.max():.3g}{hint}.")
    return probs


def _checked(probs, labels):
    """``probs`` and ``labels`` as the metrics take them (:func:`check_probabilities`,
    :func:`class_labels`), for the public functions: logits or names are one line."""
    try:
        shape = np.shape(probs)
    except ValueError:  # (rows of different lengths)
        shape = None
    if shape is None or not shape or isinstance(probs, (str, bytes)):  # (others: below)
        raise UserError(f"Expected probabilities shaped (examples, classes); received "
                        f"{type(probs).__name__} of shape {shape} ({probs!r:.60}).")
    labels = class_labels(labels, shape[-1])
    return check_probabilities(probs, labels), labels


def top_k_error(probs, labels, k=1):
    """Fraction of examples whose label is not among the ``k`` most probable classes. Ties
    go to the lower class index, as ``np.argmax`` and Keras' ``sparse_categorical_accuracy``
    break them (the top-1 error is ``mean(argmax != label)``), for every ``k``: exactly ``k``
    classes count. Keras' ``sparse_top_k_categorical_accuracy`` (``in_top_k``) counts every
    class tied at the k-th probability and scikit-learn's ``top_k_accuracy_score`` breaks
    ties the other way, so on a saturated model (one-hot float32 outputs: many classes tied
    at 0) the three top-5 numbers differ; where no class ties, they agree."""
    return _top_k_error(*_checked(probs, labels), check_positive_int(k, "k"))


def _top_k_error(probs, labels, k):
    k = min(k, probs.shape[-1])
    top = np.argsort(-probs, axis=-1, kind="stable")[:, :k]
    return float(1.0 - np.mean(np.any(top == labels[:, None], axis=1)))


def nll(probs, labels):
    """Mean negative log-likelihood of the labels, each label's probability floored at
    ``EPS`` (1e-12: a probability of 0, a saturated float32 member's or a vote's, costs
    27.6 nats; scikit-learn's ``log_loss`` floors at float64's epsilon, 36.0 nats, so the
    two differ where a label's probability is below 1e-12, and agree elsewhere)."""
    return _nll(*_checked(probs, labels))


def _nll(probs, labels):
    picked = np.clip(probs[np.arange(len(labels)), labels], EPS, 1.0)
    return float(-np.mean(np.log(picked))) + 0.0  # (+ 0.0: a perfect model's was -0.0)


def brier(probs, labels):
    """Mean squared distance between the probabilities and the one-hot labels (summed over
    classes)."""
    return _brier(*_checked(probs, labels))


def _brier(probs, labels):
    onehot = np.eye(probs.shape[-1])[labels]
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=-1)))


MAX_BINS = 10_000  # a confidence resolution of 1e-4 (10**9 bins looped for 10 minutes)


def calibration_bins(probs, labels, bins=15):
    """Per equal-width confidence bin: (mean confidence, accuracy, count)."""
    bins = check_positive_int(bins, "bins")
    if bins > MAX_BINS:
        raise UserError(f"`bins` must be at most {MAX_BINS:,}; received {bins:,}.")
    return _bins(*_checked(probs, labels), bins)


def _bins(probs, labels, bins):
    """:func:`calibration_bins` of probabilities and labels already checked."""
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
    return _ece(calibration_bins(probs, labels, bins), len(labels))


def _ece(rows, total):
    """The ECE of :func:`calibration_bins`' ``rows`` over ``total`` examples."""
    return float(sum(count / total * abs(conf - acc) for conf, acc, count in rows if count))


def scores(probs, labels):
    """The table's columns for one set of predictions."""
    probs, labels = _checked(probs, labels)
    return {"top1_error": _top_k_error(probs, labels, 1),
            "top5_error": _top_k_error(probs, labels, 5),
            "nll": _nll(probs, labels), "brier": _brier(probs, labels),
            "ece": _ece(_bins(probs, labels, 15), len(labels))}  # (checked once, above)


def _members(member_probs):
    """Member probabilities shaped (members, n, classes), checked; else one line (a 2-D
    array read as members would compare every example with every other)."""
    member_probs = stacked_members(member_probs)
    if member_probs.ndim != 3 or not len(member_probs):
        raise UserError("Expected member probabilities shaped (members, n, classes), of one "
                        f"member at least; received shape {member_probs.shape}.")
    return check_probabilities(member_probs, what="member probabilities")


def disagreement(member_probs):
    """Mean over member pairs of the fraction of examples where their top classes differ."""
    tops = _members(member_probs).argmax(axis=-1)
    m = len(tops)
    pairs = [(i, j) for i in range(m) for j in range(i + 1, m)]
    return float(np.mean([np.mean(tops[i] != tops[j]) for i, j in pairs])) if pairs else 0.0


def average_kl(member_probs):
    """Mean over ordered member pairs (i != j) of KL(p_i || p_j), averaged over examples."""
    p = np.clip(_members(member_probs), EPS, 1.0)
    m = len(p)
    values = [np.mean(np.sum(p[i] * (np.log(p[i]) - np.log(p[j])), axis=-1))
              for i in range(m) for j in range(m) if i != j]
    return float(np.mean(values)) if values else 0.0


def entropy(probs):
    """Entropy (nats) of each row of ``probs``: probabilities, checked as the other metrics
    check them (logits gave a number near 0, a row summing to 0.2 one too)."""
    return _entropy(check_probabilities(probs))


def _entropy(probs):
    """:func:`entropy` of probabilities the caller has (NaN rows, of NaN images, stay NaN)."""
    probs = np.asarray(probs)  # (float16 clips 1e-12 to 0, whose 0 log 0 is NaN)
    p = np.clip(probs.astype(np.promote_types(probs.dtype, "float32"), copy=False), EPS, 1.0)
    return -np.sum(p * np.log(p), axis=-1)
