"""Side-by-side timing: contenders run interleaved in one process, so they share conditions."""

import time


def images_per_second(contenders, batch, rounds=3, steps=3):
    """Median images/s of each ``name -> fn(batch)``, measured interleaved.

    Each contender runs once untimed (tracing, warm-up); then each round times ``steps``
    calls of every contender in turn.
    """
    for fn in contenders.values():
        fn(batch)
    samples = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            start = time.perf_counter()
            for _ in range(steps):
                fn(batch)
            samples[name].append(steps * len(batch) / (time.perf_counter() - start))
    return {name: sorted(values)[len(values) // 2] for name, values in samples.items()}
