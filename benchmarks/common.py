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
