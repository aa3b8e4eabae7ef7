"""The training step of ``zoo.train`` under JAX against a hand-jitted stateless step of the
same model, optimizer and batches: what the product's path (Keras' ``fit``, its callbacks,
its metrics, the host-to-device copies) costs per step. In one process: ``rounds`` epochs
of the hand-jitted step, ``zoo.train``'s, then ``rounds`` hand-jitted ones again (so that a
machine speeding up or slowing down during the run favours neither side), each side after
a first epoch (compilation) that is not timed.

The model is small (``zoo.resnet20``, 32x32, batch 64), so that per-step overhead shows on
a CPU; ``benchmarks/gpu.py`` measures the full-size models on a GPU.

Run: ``.venv/bin/python benchmarks/step_overhead.py`` (under JAX, whatever the default
backend; ``make bench`` runs it in a JAX process of its own).
"""

import argparse
import functools
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def _measure(rounds=3, steps=20, batch=64, size=32, classes=10):
    """``{"zoo.train": images/s, "hand-jitted": images/s}`` (medians over ``rounds``)."""
    import numpy as np
    import tensorflow as tf

    import zoo
    from benchmarks.common import epoch_timer

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (steps * batch, size, size, 3)).astype("float32")
    y = rng.integers(0, classes, steps * batch).astype("int32")
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch, drop_remainder=True).cache()

    def build():
        return zoo.resnet20(input_shape=(size, size, 3), classes=classes)

    first = tf.data.Dataset.from_tensor_slices((x[:batch], y[:batch])).batch(batch)
    check_same_step(build, first)

    # zoo.train: one epoch per round, timed from the epoch's start to its end.
    timer, epoch_times = epoch_timer()

    # The hand-written step: Keras' stateless API, one jax.jit, the same optimizer.
    model = build()
    train_step = hand_jitted_step(model, zoo.PaperSGD(0.01, momentum=0.9, l2=5e-4))

    def hand_epoch():
        start = time.perf_counter()
        for images, labels in data.as_numpy_iterator():
            loss = train_step(images, labels)
        loss.block_until_ready()
        return time.perf_counter() - start

    hand = [hand_epoch() for _ in range(rounds + 1)][1:]
    zoo.train(build, data, epochs=rounds + 1, reduce_lr=False, seed=0, verbose=0,
              strategy="one_device", callbacks=[timer])
    hand += [hand_epoch() for _ in range(rounds)]  # on both sides of the product's epochs
    product = epoch_times[1:]
    images = steps * batch
    return {"zoo.train": images / float(np.median(product)),
            "hand-jitted": images / float(np.median(hand))}


def check_same_step(build, batch):
    """Raise where ``zoo.train``'s step and the hand-jitted one, from the same weights on
    the same ``batch`` (a dataset of one), update the weights differently: both sides must
    do the same work."""
    import zoo
    from benchmarks.common import check_same_update

    model = build()
    before = step_weights(model)
    hand = hand_jitted_step(model, zoo.PaperSGD(0.01, momentum=0.9, l2=5e-4))
    images, labels = next(batch.as_numpy_iterator())
    hand(images, labels)

    def same_start():
        model = build()
        for variable, value in zip(model.trainable_variables + model.non_trainable_variables,
                                   before, strict=True):
            variable.assign(value)
        return model

    trained = zoo.train(same_start, batch, epochs=1, reduce_lr=False, seed=0,
                        verbose=0, strategy="one_device").model
    return check_same_update(before, step_weights(trained), hand.weights(),
                             "zoo.train's step against the hand-jitted one")


def step_weights(model):
    """``model``'s weights as NumPy arrays, in the order of :func:`hand_jitted_step`'s
    ``weights()``: the trainable ones, then the others."""
    return [v.numpy() for v in model.trainable_variables + model.non_trainable_variables]


def hand_jitted_step(model, optimizer):
    """``step(images, labels) -> loss``: one SGD step of ``model`` (sparse cross-entropy) as
    one ``jax.jit`` of Keras' stateless calls, holding the variables' values itself (the
    model's variables are left as they are). The reference the product's step is held to."""
    import jax
    import keras
    import numpy as np

    from zoo.optimizers import backend_loss

    optimizer.build(model.trainable_variables)
    # compile_model's loss (under JAX, ProbabilityCrossEntropy: Keras' own clips the
    # probabilities at 1e-7, a zero gradient past a logit gap of about 16).
    loss_fn = keras.losses.get(backend_loss("sparse_categorical_crossentropy"))

    def loss_and_state(trainable, non_trainable, images, labels):
        predictions, non_trainable = model.stateless_call(trainable, non_trainable, images,
                                                          training=True)
        return loss_fn(labels, predictions), non_trainable

    gradient = jax.value_and_grad(loss_and_state, has_aux=True)

    # The state's buffers are donated, as Keras' own compiled steps donate theirs: each step
    # updates the weights in place instead of allocating new ones.
    @functools.partial(jax.jit, donate_argnums=0)
    def jitted(state, images, labels):
        trainable, non_trainable, optimizer_state = state
        (loss, non_trainable), grads = gradient(trainable, non_trainable, images, labels)
        trainable, optimizer_state = optimizer.stateless_apply(optimizer_state, grads,
                                                               trainable)
        return (trainable, non_trainable, optimizer_state), loss

    # Copies: the step donates its state's buffers, as Keras' own steps do theirs, so
    # arrays shared with the model would be deleted under the other.
    state = jax.tree.map(lambda value: jax.numpy.array(value, copy=True),
                         ([v.value for v in model.trainable_variables],
                          [v.value for v in model.non_trainable_variables],
                          [v.value for v in optimizer.variables]))

    def step(images, labels):
        nonlocal state
        state, loss = jitted(state, images, labels)
        return loss

    # Its weights now, in the order of model.trainable_variables + non_trainable_variables.
    step.weights = lambda: [np.asarray(value) for value in state[0] + state[1]]
    return step


def run():
    """One row for ``make bench``, measured in a fresh process under ``KERAS_BACKEND=jax``
    (none where JAX is not installed: ``make test``'s install has it, ``make demo``'s not)."""
    import importlib.util

    from common import result_row

    if importlib.util.find_spec("jax") is None:
        print("  left out: JAX is not installed (pip install -e '.[test]', or make test)")
        return []
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, os.path.abspath(__file__), "--json"], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:  # its own error, not a CalledProcessError that hides it
        raise RuntimeError(f"step_overhead.py failed (exit {done.returncode}):\n"
                           + done.stderr[-3000:])
    speeds = json.loads(done.stdout.strip().splitlines()[-1])
    return result_row("JAX training step, zoo.resnet20 32x32, batch 64 (CPU)", "zoo.train",
                      speeds["zoo.train"], "hand-jitted stateless step", speeds["hand-jitted"])


if __name__ == "__main__":
    # The hand-jitted step is JAX's: the benchmark runs under JAX unless told otherwise.
    backend = os.environ.setdefault("KERAS_BACKEND", "jax")
    if backend != "jax":
        sys.exit(f"step_overhead.py compares JAX steps; KERAS_BACKEND is {backend!r}. Run it "
                 "with KERAS_BACKEND=jax (or unset).")
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes (one round of two steps of batch 4): a check it runs")
    parser.add_argument("--json", action="store_true",
                        help="print the two speeds as JSON (how run() reads them)")
    args = parser.parse_args()  # (--help said nothing: it started the benchmark)
    speeds = _measure(**({"rounds": 1, "steps": 2, "batch": 4} if args.smoke else {}))
    if args.json:
        print(json.dumps(speeds))
    else:
        print(f"zoo.train {speeds['zoo.train']:.0f} img/s, hand-jitted step "
              f"{speeds['hand-jitted']:.0f} img/s, ratio "
              f"{speeds['zoo.train'] / speeds['hand-jitted']:.3f}x")
