"""Side-by-side timing: contenders run interleaved in one process, so they share conditions."""

import time

import numpy as np


def images_per_second(contenders, rounds=3):
    """Median images/s of each ``name -> fn()``, where ``fn`` returns the images it handled.

    Each contender runs once untimed (tracing, warm-up); then each round times one call of
    every contender in turn.
    """
    for fn in contenders.values():
        fn()
    samples = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            start = time.perf_counter()
            count = fn()
            samples[name].append(count / (time.perf_counter() - start))
    return {name: sorted(values)[len(values) // 2] for name, values in samples.items()}


def epoch_timer():
    """``(callback, times)``: a Keras callback that appends to ``times`` the seconds of each
    epoch, from its start to its end (its steps and the wait for the last; not ``fit``'s
    set-up)."""
    import keras

    times = []

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.began = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.began)

    return EpochTimer(), times


def result_row(benchmark, ours, ours_per_s, baseline, baseline_per_s, unit="images/s"):
    """One row of ``make bench``'s table: both speeds and their ratio (ours / baseline)."""
    return {"benchmark": benchmark, "ours": ours, "ours_per_s": round(ours_per_s, 2),
            "baseline": baseline, "baseline_per_s": round(baseline_per_s, 2),
            "ratio": round(ours_per_s / baseline_per_s, 3), "unit": unit}


def check_same_results(ours, reference, what, atol=1e-5):
    """Raise where the two sides of a benchmark compute different numbers (arrays, or lists
    of them): a ratio of two different computations measures nothing."""
    for a, b in zip(_arrays(ours), _arrays(reference), strict=True):
        if a.shape != b.shape or not np.allclose(a, b, rtol=0, atol=atol):
            worst = np.abs(a - b).max() if a.shape == b.shape else "shapes differ"
            raise AssertionError(f"{what}: the two sides disagree ({a.shape} vs {b.shape}, "
                                 f"largest difference {worst}, allowed {atol}).")


def check_same_update(before, ours, reference, what, rtol=1e-3):
    """Raise where two training steps from the same weights ``before`` moved them apart:
    the updates (``ours - before``, ``reference - before``, over every weight) may differ
    by ``rtol`` of the reference's size. The weights barely move in one step, so they are
    compared as updates, not as values."""
    before, ours, reference = (np.concatenate([np.ravel(w).astype("float64")
                                               for w in _arrays(ws)])
                               for ws in (before, ours, reference))
    ours, reference = ours - before, reference - before
    error = np.linalg.norm(ours - reference) / max(np.linalg.norm(reference), 1e-30)
    if not error <= rtol:
        raise AssertionError(f"{what}: the two steps update the weights differently "
                             f"(relative difference {error:.2e}, allowed {rtol:g}).")
    return error


def _arrays(values):
    import keras

    values = values if isinstance(values, (list, tuple)) else [values]
    return [np.asarray(keras.ops.convert_to_numpy(v), dtype="float64") for v in values]


def run_seed_study(parser, argv, name, run):
    """Add ``--seed`` and ``--output-dir`` to ``parser`` (a study's: its members train in
    ``runs/NAME/seedN`` by default, a folder a seed, as a run of other settings there is
    refused), parse ``argv`` and ``run(args)``; a user's mistake (a ``UserError``, such as
    that refusal) is one line and exit 2."""
    from safeio.checks import UserError

    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", default=None, help=f"default: runs/{name}/seedN")
    args = parser.parse_args(argv)
    args.output_dir = args.output_dir or f"runs/{name}/seed{args.seed}"
    try:
        return run(args)
    except UserError as err:
        parser.error(str(err))
