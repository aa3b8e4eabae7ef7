"""Side-by-side timing: contenders run interleaved in one process, so they share conditions."""

import time


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
