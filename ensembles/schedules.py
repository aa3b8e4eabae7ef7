"""Huang et al.'s cyclic cosine learning-rate schedule, in ``keras.ops`` (every backend)."""

import math

import keras

from safeio.checks import UserError, check_positive_int, check_positive_number


@keras.saving.register_keras_serializable(package="ensembles")
class CyclicCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Huang et al.'s schedule: ``lr = lr0 / 2 * (cos(pi * position / length) + 1)``.

    The ``total_steps`` updates are split into ``cycles`` cycles whose boundaries fall at
    ``floor(k * total_steps / cycles)``, k = 0 .. cycles: when the steps divide evenly every
    cycle has ``total_steps / cycles`` updates (exactly Keras' ``CosineDecayRestarts`` with
    ``t_mul=1, m_mul=1``), otherwise the lengths differ by at most one update, so the run
    still ends at the end of its last cycle. The rate restarts at ``lr0`` at the start of
    every cycle and anneals towards 0; ``position`` counts the updates done in the cycle.
    Written in ``keras.ops``; steps past ``total_steps`` start the cycles again.

    Example:

    >>> schedule = CyclicCosine(0.1, total_steps=100, cycles=4)
    >>> round(float(schedule(0)), 6), round(float(schedule(25)), 6)
    (0.1, 0.1)
    >>> CyclicCosine(0.1, total_steps=50, cycles=3).boundaries
    [16, 33, 50]
    """

    def __init__(self, initial_learning_rate, total_steps, cycles):
        for name, value in (("total_steps", total_steps), ("cycles", cycles)):
            check_positive_int(value, name)
        if total_steps < cycles:
            raise UserError(
                f"`cycles` must be between 1 and total_steps ({total_steps}); received {cycles}.")
        if total_steps * (cycles + 1) >= 2**31:  # the cycle arithmetic is int32 (JAX's)
            raise UserError(f"total_steps x (cycles + 1) must stay below 2**31; received "
                            f"{total_steps} x {cycles + 1}.")
        check_positive_number(initial_learning_rate, "initial_learning_rate")
        self.initial_learning_rate = float(initial_learning_rate)
        self.total_steps = int(total_steps)  # (NumPy's int64: an int64 Sub of int32 steps,
        self.cycles = int(cycles)  # and a config json.dumps refused)

    @property
    def boundaries(self):
        """The update counts at which the cycles end (a snapshot is taken at each)."""
        return [k * self.total_steps // self.cycles for k in range(1, self.cycles + 1)]

    def __call__(self, step):
        # Keras passes the number of updates done so far. Integer arithmetic: exact at any
        # step count, on every backend.
        total, cycles = self.total_steps, self.cycles
        step = keras.ops.mod(keras.ops.cast(step, "int32"), total)
        cycle = keras.ops.floor_divide((step + 1) * cycles + total - 1, total) - 1
        start = keras.ops.floor_divide(cycle * total, cycles)
        length = keras.ops.floor_divide((cycle + 1) * total, cycles) - start
        position = keras.ops.cast(step - start, "float32") / keras.ops.cast(length, "float32")
        return self.initial_learning_rate / 2.0 * (keras.ops.cos(math.pi * position) + 1.0)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "total_steps": self.total_steps, "cycles": self.cycles}
