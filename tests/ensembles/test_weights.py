"""Fitted member weights: the NLL optimum where it is known in closed form, never worse than
uniform weights (scored by scikit-learn), and Caruana et al.'s selection worked by hand."""

import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import log_loss

import ensembles
from tests.helpers import tiny_model


def _binary(true_class_probs, labels):
    """(members, n, 2) probabilities giving each example's label the given probability."""
    p = np.asarray(true_class_probs, "float64")
    labels = np.asarray(labels)
    out = np.empty(p.shape + (2,))
    out[..., 1] = np.where(labels == 1, p, 1 - p)
    out[..., 0] = 1 - out[..., 1]
    return out


def test_nll_weights_find_the_closed_form_optimum():
    """Member A gives the label 0.8 on a fraction f of the examples and 0.2 on the rest,
    member B the reverse, member C 0.01 everywhere. The mixture's NLL,
    -f log(0.2 + 0.6 w) - (1 - f) log(0.8 - 0.6 w), is least at w_A = (f - 0.2) / 0.6:
    0.75 at f = 0.65, with B taking the rest and C nothing."""
    n, f = 200, 0.65
    first = int(f * n)
    labels = np.arange(n) % 2
    a = np.where(np.arange(n) < first, 0.8, 0.2)
    probs = _binary([a, 1 - a, np.full(n, 0.01)], labels)
    weights = ensembles.nll_weights(probs, labels)
    np.testing.assert_allclose(weights, [0.75, 0.25, 0.0], atol=2e-3)
    assert weights.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(5))
def test_fitted_weights_are_never_worse_than_uniform_on_the_data_they_fit(seed):
    rng = np.random.default_rng(seed)
    members, n, classes = 4, 60, 5
    probs = rng.dirichlet(np.full(classes, 0.7), size=(members, n))
    labels = rng.integers(0, classes, n)
    probs[0, np.arange(n), labels] += 1.0  # one member better than the others
    probs /= probs.sum(axis=-1, keepdims=True)

    def nll(weights):  # scikit-learn's, on the weighted average
        mix = np.tensordot(np.asarray(weights, "float64") / np.sum(weights), probs, axes=1)
        return log_loss(labels, mix, labels=range(classes))

    uniform = nll(np.ones(members))
    fitted = ensembles.nll_weights(probs, labels)
    counts = ensembles.greedy_counts(probs, labels, rounds=20)
    assert nll(fitted) <= uniform + 1e-9
    assert nll(fitted) <= nll(counts) + 1e-6  # the simplex optimum beats any count vector
    assert counts.sum() == 20 and counts.dtype.kind == "i"
    assert fitted.argmax() == counts.argmax() == 0


def test_caruanas_selection_worked_by_hand():
    """Two examples (labels 0 and 1). The label's probability: A 0.9 and 0.3, B 0.3 and 0.9,
    C 0.55 and 0.55. By hand, NLL of the average of the chosen:
    round 1: A 0.6547, B 0.6547, C 0.5978 -> C;
    round 2: C+A 0.5886, C+B 0.5886 (tie: the first), C+C 0.5978 -> A;
    round 3: A,C+A 0.6016, A,C+B 0.5390, A,C+C 0.5838 -> B."""
    labels = np.array([0, 1])
    probs = _binary([[0.9, 0.3], [0.3, 0.9], [0.55, 0.55]], labels)
    assert ensembles.greedy_counts(probs, labels, rounds=1).tolist() == [0, 0, 1]
    assert ensembles.greedy_counts(probs, labels, rounds=2).tolist() == [1, 0, 1]
    assert ensembles.greedy_counts(probs, labels, rounds=3).tolist() == [1, 1, 1]


def _caruana(probs, labels, rounds):
    """A direct re-implementation: a list of chosen indices, the mean recomputed each time."""
    chosen = []
    for _ in range(rounds):
        best, best_nll = None, None
        for k in range(len(probs)):
            mix = np.mean([probs[i] for i in chosen + [k]], axis=0)
            value = log_loss(labels, mix, labels=range(probs.shape[-1]))
            if best_nll is None or value < best_nll - 1e-12:
                best, best_nll = k, value
        chosen.append(best)
    return np.bincount(chosen, minlength=len(probs))


@pytest.mark.parametrize("seed", range(3))
def test_greedy_counts_equal_a_direct_re_implementation(seed):
    rng = np.random.default_rng(10 + seed)
    probs = rng.dirichlet(np.ones(3), size=(4, 25))
    labels = rng.integers(0, 3, 25)
    np.testing.assert_array_equal(ensembles.greedy_counts(probs, labels, rounds=7),
                                  _caruana(probs, labels, 7))


def test_fit_weights_reads_the_members_and_feeds_ensemble(capsys):
    """From models and a dataset, in the members' order; the weights build the ensemble,
    whose held-out NLL is then no worse than with uniform weights; bad input is one line."""
    members = [tiny_model(8, 3) for _ in range(3)]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 3, 32).astype("int32")
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    weights = ensembles.fit_weights(members, data)
    assert weights.shape == (3,) and weights.sum() == pytest.approx(1.0)
    fitted = ensembles.evaluate(ensembles.Ensemble(members, weights=weights), data)
    uniform = ensembles.evaluate(ensembles.Ensemble(members), data)
    assert fitted.loc["ensemble", "nll"] <= uniform.loc["ensemble", "nll"] + 1e-6
    counts = ensembles.fit_weights(ensembles.Ensemble(members), data, method="greedy",
                                   rounds=4)
    assert counts.sum() == 4
    with pytest.raises(ValueError, match=r"`method` must be one of \('nll', 'greedy'\); "
                                         r"received 'mean'"):
        ensembles.fit_weights(members, data, method="mean")
    with pytest.raises(ValueError, match=r"rounds=4 counts the rounds of method='greedy'; "
                                         r"method='nll' fits weights with no rounds"):
        ensembles.fit_weights(members, data, rounds=4)  # (ignored)
    # Weights of the mean, fitted for a vote, were returned as if they applied to it.
    with pytest.raises(ValueError, match="fit_weights fits the weights of the mean rule; "
                                         "ensemble combines by 'vote'"):
        ensembles.fit_weights(ensembles.Ensemble(members, combine="vote"), data)


def test_zoo_ensemble_fit_weights_from_the_shell(tmp_path, capsys):
    """`zoo ensemble A B C --fit-weights validation` on the digits: the weights it prints are
    ensembles.fit_weights' on the same split, and the saved ensemble carries them."""
    import keras

    import data
    import zoo
    from zoo import cli

    paths = []
    for seed in range(3):
        keras.utils.set_random_seed(seed)
        model = zoo.set_class_names(tiny_model(8, 10), data.info("digits").class_names)
        paths.append(str(tmp_path / f"m{seed}.keras"))
        zoo.save_model(model, paths[-1])
    out = str(tmp_path / "fitted.keras")
    assert cli.main(["ensemble", *paths, "--fit-weights", "validation", "--output", out]) == 0
    assert "Weights fitted on the validation split (nll): tiny_1 " in capsys.readouterr().out
    saved = ensembles.load(out)
    models = [ensembles.load(p) for p in paths]
    expected = ensembles.fit_weights(models, data.load("digits", "validation", image_size=8,
                                                       batch_size=128))
    np.testing.assert_allclose(ensembles.member_weights(saved), expected, rtol=1e-6)
    assert zoo.class_names(saved) == list(data.info("digits").class_names)
    assert cli.main(["ensemble", *paths, "--fit-weights", "validation", "--weights", "1", "2",
                     "3", "--output", out]) == 2
    assert "--fit-weights fits the weights" in capsys.readouterr().err
    # A typo in the second split: refused after the weights were fitted, now before.
    assert cli.main(["ensemble", *paths, "--fit-weights", "validation", "--calibrate-on",
                     "valdation", "--output", str(tmp_path / "typo.keras")]) == 2
    captured = capsys.readouterr()
    assert "Unknown split 'valdation' of 'digits'; available: 'train'" in captured.err
    assert "Weights fitted" not in captured.out and not (tmp_path / "typo.keras").exists()
    # Fitted on (part of) the training split: said, as a note.
    assert cli.main(["ensemble", *paths, "--fit-weights", "train[:200]", "--output",
                     str(tmp_path / "on_train.keras")]) == 0
    assert ("Note: --fit-weights train[:200] fits to the training split, on which the models "
            "are more confident than on new images") in capsys.readouterr().out


def test_weights_are_not_fitted_on_no_examples():
    """An empty validation array gave [0.5, 0.5] and greedy counts [10, 0] (NaN's argmin)."""
    from ensembles.weights import greedy_counts, nll_weights

    for fit in (nll_weights, greedy_counts):
        with pytest.raises(ValueError, match="Fitting member weights needs held-out examples: "
                                             "at least one; received none."):
            fit(np.zeros((2, 0, 3)), [])
