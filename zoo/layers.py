"""Layers the classic papers used that Keras does not ship."""

import math

import keras
import numpy as np

from safeio.checks import UserError, is_int, is_number


# The two LRN settings in use: the paper's (AlexNet, sec. 3.3) and Caffe's (the reference
# bvlc_alexnet and bvlc_googlenet models: k=1, and alpha=1e-4 divided by n=5).
LRN_PRESETS = {
    "paper": {"depth_radius": 2, "bias": 2.0, "alpha": 1e-4, "beta": 0.75},
    "caffe": {"depth_radius": 2, "bias": 1.0, "alpha": 1e-4 / 5, "beta": 0.75},
}


def _is_whole(value):
    """Whether ``value`` is a whole number (2, or 2.0 from a config; not a bool, a string,
    an infinity or NaN, on which ``int`` raises its own error)."""
    return is_number(value) and math.isfinite(value) and int(value) == value


@keras.saving.register_keras_serializable(package="zoo")
class LocalResponseNormalization(keras.layers.Layer):
    """Local response normalization across channels (Krizhevsky et al. 2012, sec. 3.3).

    For the activity ``a[c]`` of channel ``c`` at one position, with ``N`` channels::

        b[c] = a[c] / (k + alpha * sum(a[j]**2 for j in
                                       range(max(0, c - r), min(N - 1, c + r) + 1))) ** beta

    where ``r = depth_radius``, so the window covers ``n = 2r + 1`` adjacent channels
    and is clipped at the channel edges. The defaults are the paper's: ``n = 5``
    (``depth_radius=2``), ``k = 2``, ``alpha = 1e-4``, ``beta = 0.75``. ``alpha`` is *not*
    divided by ``n`` (Caffe and PyTorch's ``LocalResponseNorm`` divide it; the paper and
    ``tf.nn.local_response_normalization`` do not). Inputs are channels-last.

    Example:

    >>> import numpy as np
    >>> lrn = LocalResponseNormalization()
    >>> tuple(lrn(np.ones((1, 2, 2, 8), "float32")).shape)
    (1, 2, 2, 8)
    """

    def __init__(self, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75, **kwargs):
        super().__init__(**kwargs)
        if not _is_whole(depth_radius) or depth_radius < 0:
            raise UserError(f"LocalResponseNormalization's `depth_radius` must be a "
                            f"non-negative integer; received {depth_radius!r}.")
        for what, value, floor in (("bias", bias, "above 0 (k: at 0 or below, a zero "
                                    "activation divides by 0)"), ("alpha", alpha, ">= 0"),
                                   ("beta", beta, ">= 0")):
            if (not is_number(value) or not math.isfinite(value) or value < 0
                    or (what == "bias" and value == 0)):
                raise UserError(f"LocalResponseNormalization's `{what}` must be a finite "
                                f"number {floor}; received {value!r}.")
        self.depth_radius = int(depth_radius)
        self.bias = float(bias)
        self.alpha = float(alpha)
        self.beta = float(beta)

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise UserError(
                "LocalResponseNormalization expects 4D channels-last input "
                f"(batch, height, width, channels), received shape {tuple(input_shape)}."
            )
        super().build(input_shape)

    def call(self, inputs):
        # In float32 under mixed precision (the squares and the power are the sensitive
        # part). On TensorFlow, its fused op: the same formula (alpha not divided by n) with
        # a fused gradient, which halved the demo AlexNet's training step on a CPU (4.7 to
        # 2.3 s an epoch). Elsewhere (JAX, PyTorch), the formula in keras.ops.
        x = keras.ops.cast(inputs, "float32")
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            out = tf.nn.local_response_normalization(
                x, depth_radius=self.depth_radius, bias=self.bias, alpha=self.alpha,
                beta=self.beta)
        else:
            out = self.formula(x)
        return keras.ops.cast(out, inputs.dtype)

    def formula(self, x):
        """The formula in keras.ops, on every backend: the window sum is ``2r + 1`` shifted
        slices of the zero-padded squares."""
        r, channels = self.depth_radius, x.shape[-1]
        padded = keras.ops.pad(keras.ops.square(x), [(0, 0), (0, 0), (0, 0), (r, r)])
        window = sum(padded[..., i:i + channels] for i in range(2 * r + 1))
        return x / keras.ops.power(self.bias + self.alpha * window, self.beta)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            depth_radius=self.depth_radius, bias=self.bias, alpha=self.alpha, beta=self.beta
        )
        return config


@keras.saving.register_keras_serializable(package="zoo")
class ChannelSlice(keras.layers.Layer):
    """Channels ``start`` to ``stop`` (exclusive) of a channels-last tensor: how one
    normalised map is handed to two towers (Caffe's grouped convolution input).

    Example:

    >>> tuple(ChannelSlice(2, 5)(np.ones((1, 3, 3, 8), "float32")).shape)
    (1, 3, 3, 3)
    """

    def __init__(self, start, stop, **kwargs):
        super().__init__(**kwargs)
        if not (_is_whole(start) and _is_whole(stop) and 0 <= start < stop):
            raise UserError(f"ChannelSlice needs 0 <= start < stop; received start={start!r}, "
                            f"stop={stop!r}.")
        self.start, self.stop = int(start), int(stop)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is not None and self.stop > channels:  # (its output would be shorter)
            raise UserError(f"ChannelSlice({self.start}, {self.stop}) of a tensor of "
                            f"{channels} channels: stop must be at most {channels}; received "
                            f"input shape {tuple(input_shape)}.")
        super().build(input_shape)

    def call(self, inputs):
        return inputs[..., self.start:self.stop]

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.stop - self.start)

    def get_config(self):
        return {**super().get_config(), "start": self.start, "stop": self.stop}


@keras.saving.register_keras_serializable(package="zoo")
class ZeroPadChannels(keras.layers.Layer):
    """Adds ``before`` zero channels in front of a channels-last tensor's channels and
    ``after`` behind them: the parameter-free shortcut ("option A") of the CIFAR ResNets,
    where a stage doubles the channels.

    Example:

    >>> x = np.ones((1, 2, 2, 3), "float32")
    >>> keras.ops.convert_to_numpy(ZeroPadChannels(1, 2)(x))[0, 0, 0].tolist()
    [0.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    """

    def __init__(self, before, after, **kwargs):
        super().__init__(**kwargs)
        for value, what in ((before, "before"), (after, "after")):
            if not _is_whole(value) or value < 0:
                raise UserError(f"ZeroPadChannels' `{what}` must be a non-negative integer; "
                                f"received {value!r}.")
        self.before, self.after = int(before), int(after)

    def call(self, inputs):
        pads = [(0, 0)] * (len(inputs.shape) - 1) + [(self.before, self.after)]
        return keras.ops.pad(inputs, pads)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] + self.before + self.after)

    def get_config(self):
        return {**super().get_config(), "before": self.before, "after": self.after}


@keras.saving.register_keras_serializable(package="zoo")
class MaxPadding2D(keras.layers.Layer):
    """Pads rows and columns of a channels-last map with -inf: the padding of a max-pool
    (PyTorch's and Caffe's), which no window's maximum takes, whatever the sign of the
    values. ``padding`` as :class:`keras.layers.ZeroPadding2D`'s: an int, ``(rows,
    columns)``, or ``((top, bottom), (left, right))``.

    :func:`max_pool` uses it for torchvision's padded max-pools and for Caffe's ceil mode.

    Example:

    >>> x = np.zeros((1, 2, 2, 1), "float32")
    >>> keras.ops.convert_to_numpy(MaxPadding2D(((0, 1), (0, 1)))(x))[0, :, :, 0].tolist()
    [[0.0, 0.0, -inf], [0.0, 0.0, -inf], [-inf, -inf, -inf]]
    """

    def __init__(self, padding=1, **kwargs):
        super().__init__(**kwargs)
        self.padding = _pairs(padding)

    def call(self, inputs):
        (top, bottom), (left, right) = self.padding
        return keras.ops.pad(inputs, [(0, 0), (top, bottom), (left, right), (0, 0)],
                             constant_values=float("-inf"))

    def compute_output_shape(self, input_shape):
        grown = [None if size is None else size + sum(pair)
                 for size, pair in zip(input_shape[1:3], self.padding)]
        return (input_shape[0], *grown, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


def _pairs(padding):
    """``padding`` as ``((top, bottom), (left, right))`` of non-negative ints, or one line."""
    def pair(value):
        return (value, value) if is_int(value) else tuple(value)

    try:
        pairs = (pair(padding),) * 2 if is_int(padding) else tuple(pair(p) for p in padding)
        ok = len(pairs) == 2 and all(len(p) == 2 and all(is_int(v) and v >= 0 for v in p)
                                     for p in pairs)
    except TypeError:  # not iterable
        ok = False
    if not ok:
        raise UserError("MaxPadding2D's `padding` must be a non-negative int, (rows, "
                        "columns) or ((top, bottom), (left, right)); received "
                        f"{padding!r}.")
    return tuple(tuple(int(v) for v in p) for p in pairs)


def max_pool(x, size, strides, name, padding=0, ceil_mode=False):
    """A ``size`` x ``size`` max-pool of stride ``strides`` with PyTorch's ``MaxPool2d``
    arguments: ``padding`` rows and columns of -inf on every side, and in ``ceil_mode``
    (Caffe's pooling, always) the windows that the bottom or right edge cuts count too:
    output sides ``ceil((n + 2 padding - size) / strides) + 1`` instead of the floor.

    A ``MaxPooling2D`` named ``name``, after a :class:`MaxPadding2D` named ``f"{name}_pad"``
    where it pads; in ceil mode, sides known when built that Keras' "valid" or "same" pool
    the same way (a 3x3/2 pool of 56 or 57, a 2x2/2 of any) take that instead, no padding.

    Example:

    >>> x = keras.Input((57, 56, 8))
    >>> max_pool(x, 3, 2, "pool", ceil_mode=True).shape  # Caffe: 28 x 28; floor: 28 x 27
    (None, 28, 28, 8)
    """
    # Ceil mode is more rows and columns of -inf at the end: strides - 1 lets the windows
    # that the edge cuts count, and no more than size - padding - 1 keeps every window
    # starting inside the map or its first padding, as PyTorch and Caffe drop a last
    # window starting in the bottom or right padding (PyTorch's output size for every
    # side, known or not; checked against ONNX Runtime's).
    if not is_int(padding) or not 0 <= padding <= size // 2:
        raise UserError(f"max_pool {name!r}: `padding` must be an integer from 0 to half the "
                        f"window, {size // 2} for size {size} (PyTorch's rule: a window "
                        f"of padding alone has no maximum); received {padding!r}.")
    extra = min(strides - 1, size - padding - 1) if ceil_mode else 0
    if ceil_mode and not padding:
        alike = {_keras_padding_alike(side, size, strides) for side in x.shape[1:3]}
        if len(alike) == 1 and None not in alike:
            return keras.layers.MaxPooling2D(size, strides=strides, padding=alike.pop(),
                                             name=name)(x)
    if padding or extra:
        x = MaxPadding2D(((padding, padding + extra),) * 2, name=f"{name}_pad")(x)
    return keras.layers.MaxPooling2D(size, strides=strides, name=name)(x)


def _keras_padding_alike(side, size, strides):
    """Keras' ``padding`` ("valid" or "same") that pools a side of ``side`` as ceil mode
    does, or None (a side unknown, or neither)."""
    if side is None:
        return None
    if (side - size) % strides == 0:  # no window cut by the edge: floor is ceil
        return "valid"
    out = -(-(side - size) // strides) + 1
    extra = (out - 1) * strides + size - side  # "same" pads it, the smaller half before
    return "same" if -(-side // strides) == out and extra // 2 == 0 else None


@keras.saving.register_keras_serializable(package="zoo")
class CeilAveragePooling2D(keras.layers.Layer):
    """Caffe's average pool (PyTorch's ``AvgPool2d(ceil_mode=True)``), without padding:
    output sides ``ceil((n - pool_size) / strides) + 1``, a window that the bottom or
    right edge cuts averaging the values inside the map (Caffe's ``pooling_layer.cpp``
    divides by the part of the window inside it). :func:`average_pool` uses it where
    Keras' "valid" rounds down, at any size, known when built or not.

    Example:

    >>> x = np.arange(16, dtype="float32").reshape(1, 4, 4, 1)
    >>> keras.ops.convert_to_numpy(CeilAveragePooling2D(3, 2)(x))[0, :, :, 0].round(4)
    array([[ 5. ,  6.5],
           [11. , 12.5]], dtype=float32)
    """

    def __init__(self, pool_size, strides, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("pool_size", pool_size), ("strides", strides)):
            if not is_int(value) or value < 1:
                raise UserError(f"CeilAveragePooling2D's `{name}` must be a positive int; "
                                f"received {value!r}.")
        if pool_size < strides:  # (a last window of padding alone: 0 / 0)
            raise UserError(f"CeilAveragePooling2D's `pool_size` must be at least its "
                            f"`strides`, {strides}; received {pool_size}.")
        self.pool_size, self.strides = pool_size, strides

    def call(self, inputs):
        ops = keras.ops
        shape = ops.shape(inputs)
        # Zeros after the last row and column let the windows the edge cuts count; pooled
        # ones give the part of each window inside the map.
        pads = [(0, 0)] + [(0, (-(side - self.pool_size)) % self.strides)
                           for side in shape[1:3]] + [(0, 0)]
        inside = ops.pad(ops.ones((1, shape[1], shape[2], 1), inputs.dtype), pads)
        window = (self.pool_size, self.pool_size)
        return (ops.average_pool(ops.pad(inputs, pads), window, self.strides, "valid")
                / ops.average_pool(inside, window, self.strides, "valid"))

    def compute_output_shape(self, input_shape):
        sides = [None if side is None else -(-(side - self.pool_size) // self.strides) + 1
                 for side in input_shape[1:3]]
        return (input_shape[0], *sides, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides}


def average_pool(x, size, strides, name):
    """A ``size`` x ``size`` average pool of stride ``strides`` in Caffe's ceil mode, no
    padding (:class:`CeilAveragePooling2D`): Keras' ``AveragePooling2D`` named ``name``
    where no window is cut by the edge of a map of sides known when built (14 -> 4 for a
    5x5/3 pool), the Caffe layer otherwise (13 -> 4, where Keras' "valid" gives 3).

    Example:

    >>> average_pool(keras.Input((13, 14, 8)), 5, 3, "pool").shape
    (None, 4, 4, 8)
    """
    if all(side is not None and (side - size) % strides == 0 for side in x.shape[1:3]):
        return keras.layers.AveragePooling2D(size, strides=strides, name=name)(x)
    return CeilAveragePooling2D(size, strides, name=name)(x)


@keras.saving.register_keras_serializable(package="zoo")
class DropConnectDense(keras.layers.Dense):
    """A dense layer with DropConnect (Wan et al. 2013, "Regularization of neural networks
    using DropConnect"): in training, every example draws its own Bernoulli mask over the
    weights, keeping each with probability ``1 - rate``; in inference, the layer uses the
    expected weights.

    The kept weights are scaled by ``1 / (1 - rate)`` in training (as Keras' ``Dropout``
    scales its units), so that the expected weights are the weights themselves and
    inference is a plain ``Dense``. The bias is not dropped. Wan et al. approximate the
    expected activation at inference by sampling; the expected weights are the mean
    network, the usual choice. ``rate=0`` is ``keras.layers.Dense``.

    A mask per example costs ``batch x inputs x units`` numbers in training (AlexNet's
    fc6 at batch 128: 4.8e9): full-size AlexNets with DropConnect need a small batch or a
    large accelerator, which is why the paper's own experiments used small networks.

    Args:
        units, activation, ...: as ``keras.layers.Dense``.
        rate: the probability of dropping each weight, in [0, 1).
        seed: seed of the masks.

    Example:

    >>> layer = DropConnectDense(3, rate=0.5, seed=0)
    >>> x = np.ones((2, 4), "float32")
    >>> bool(np.all(layer(x, training=False) == layer(x, training=False)))
    True
    """

    def __init__(self, units, rate=0.5, seed=None, **kwargs):
        super().__init__(units, **kwargs)
        if not is_number(rate) or not 0 <= rate < 1:  # (NumPy's numbers too)
            raise UserError(f"DropConnectDense's `rate` must be a number in [0, 1); received "
                            f"{rate!r}.")
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise UserError(f"DropConnectDense takes (batch, features) inputs; received shape "
                            f"{tuple(input_shape)}. Flatten first.")
        super().build(input_shape)

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return super().call(inputs)
        keep = 1.0 - self.rate
        shape = (keras.ops.shape(inputs)[0],) + tuple(self.kernel.shape)
        mask = keras.random.uniform(shape, seed=self.seed_generator) < keep
        kernel = keras.ops.where(mask, self.kernel / keep, 0.0)
        outputs = keras.ops.einsum("bi,biu->bu", inputs, keras.ops.cast(kernel, inputs.dtype))
        if self.use_bias:
            outputs = outputs + self.bias
        return self.activation(outputs) if self.activation is not None else outputs

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


def pooling_sequence(input_size, output_size, pseudo_random=True, u=None, seed=None):
    """The boundaries ``a_0 = 0 < a_1 < ... < a_out = input_size`` of fractional max
    pooling's regions along one axis (Graham 2014), as ``tf.nn.fractional_max_pool`` draws
    them: every step is ``floor(alpha)`` or ``ceil(alpha)``, ``alpha = input / output``.

    ``pseudo_random``: ``a_i = ceil(alpha * (i + u)) - 1`` for ``u`` in ``[0, u_max)`` (the
    largest ``u`` that keeps the steps within bounds), ``u`` drawn from ``seed`` unless
    given; otherwise (random), a mix of the two step sizes, shuffled by ``seed`` (the longer
    steps first without one). Returns a Keras tensor of ``output_size + 1`` integers.

    Example:

    >>> keras.ops.convert_to_numpy(pooling_sequence(10, 7, u=0.0)).tolist()
    [0, 1, 2, 4, 5, 7, 8, 10]
    """
    alpha = input_size / output_size
    k = input_size // output_size
    if pseudo_random:
        if u is None:
            u = keras.random.uniform((), seed=seed) * largest_u(input_size, output_size)
        inner = keras.ops.ceil(alpha * (keras.ops.arange(1, output_size, dtype="float32") + u))
        inner = keras.ops.cast(inner, "int32") - 1
        return keras.ops.concatenate([keras.ops.zeros((1,), "int32"), inner,
                                      keras.ops.full((1,), input_size, "int32")])
    steps = np.full(output_size, k, "int32")
    steps[:input_size % output_size] += 1
    steps = keras.ops.convert_to_tensor(steps)
    if seed is not None:
        steps = keras.random.shuffle(steps, seed=seed)
    return keras.ops.concatenate([keras.ops.zeros((1,), "int32"),
                                  keras.ops.cumsum(steps, axis=0)])


def largest_u(input_size, output_size):
    """The bound ``u_max`` of the pseudo-random sequences' ``u``, as TensorFlow's op takes
    it: ``min((k + 2) / alpha - 1, (input + 1 - k) / alpha - (output - 1))``, ``k`` the
    floor of ``alpha``, so that every step stays ``floor(alpha)`` or ``ceil(alpha)``."""
    alpha, k = input_size / output_size, input_size // output_size
    return min((k + 2) / alpha - 1, (input_size + 1 - k) / alpha - (output_size - 1))


def _pool_axis(x, sequence, axis, overlapping, window):
    """Max over the regions ``[a_i, a_{i+1}]`` (overlapping) or ``[a_i, a_{i+1} - 1]``
    along ``axis``: the elementwise max of ``window`` gathered slices, each index clipped
    to its region's end (a repeat does not change a max)."""
    size = x.shape[axis]
    starts, ends = sequence[:-1], sequence[1:] - (0 if overlapping else 1)
    ends = keras.ops.minimum(ends, size - 1)
    out = None
    for offset in range(window):
        rows = keras.ops.minimum(starts + offset, ends)
        taken = keras.ops.take(x, rows, axis=axis)
        out = taken if out is None else keras.ops.maximum(out, taken)
    return out


def fractional_max_pool(x, row_sequence, col_sequence, overlapping=True):
    """Max pooling of channels-last ``x`` over the regions the two boundary sequences
    give, as ``tf.nn.fractional_max_pool`` pools given its ``row_pooling_sequence`` and
    ``col_pooling_sequence``, in ``keras.ops`` (every backend). Rows are pooled, then
    columns: the max over a rectangle is the max of the maxima of its rows."""
    for sequence, axis in ((row_sequence, 1), (col_sequence, 2)):
        sequence = keras.ops.convert_to_tensor(sequence, "int32")
        x = _pool_axis(x, sequence, axis, overlapping,
                       _longest_step(x.shape[axis], sequence.shape[0] - 1) + overlapping)
    return x


def _longest_step(input_size, output_size):
    return -(-input_size // output_size)  # ceil(alpha)


@keras.saving.register_keras_serializable(package="zoo")
class FractionalMaxPooling2D(keras.layers.Layer):
    """Fractional max pooling (Graham 2014): shrinks height and width by a factor
    ``ratio`` between 1 and 2 (say 1.41 rather than max pooling's 2), over regions whose
    sizes are ``floor(ratio)`` or ``ceil(ratio)``, in ``keras.ops`` on every backend.

    In training, every batch draws new row and column sequences (one for the whole batch,
    as ``tf.nn.fractional_max_pool`` does): ``pseudo_random=True`` gives Graham's
    pseudo-random sequences, ``False`` the random ones; ``overlapping=True`` makes
    neighbouring regions share their boundary row and column. In inference, the sequences
    are fixed (pseudo-random at the middle of the admissible ``u``), so predictions are
    deterministic; averaging several training-mode passes is Graham's test-time averaging.
    The output side is ``floor(input / ratio)``, as TensorFlow's.

    Example:

    >>> pool = FractionalMaxPooling2D(1.5, seed=0)
    >>> tuple(pool(np.ones((1, 9, 9, 2), "float32")).shape)
    (1, 6, 6, 2)
    """

    def __init__(self, ratio, pseudo_random=True, overlapping=True, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not is_number(ratio) or not 1 <= ratio < 2:
            raise UserError(f"FractionalMaxPooling2D's `ratio` must be a number in [1, 2) "
                            f"(2 and more is ordinary max pooling); received {ratio!r}.")
        self.ratio = float(ratio)
        self.pseudo_random = bool(pseudo_random)
        self.overlapping = bool(overlapping)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        if len(input_shape) != 4 or None in tuple(input_shape[1:3]):
            raise UserError("FractionalMaxPooling2D takes channels-last images of a known "
                            f"height and width; received shape {tuple(input_shape)}.")
        if min(self.output_sides(input_shape)) < 1:
            raise UserError(f"FractionalMaxPooling2D({self.ratio}) needs inputs of at least "
                            f"{int(np.ceil(self.ratio))}x{int(np.ceil(self.ratio))}; "
                            f"received shape {tuple(input_shape)}.")
        super().build(input_shape)

    def output_sides(self, input_shape):
        return tuple(int(np.floor(side / self.ratio)) for side in input_shape[1:3])

    def sequences(self, input_shape, training=False):
        """The row and column boundaries for one batch (``training``: drawn anew)."""
        sides = []
        for size, out in zip(input_shape[1:3], self.output_sides(input_shape)):
            if training:
                sides.append(pooling_sequence(size, out, self.pseudo_random,
                                              seed=self.seed_generator))
            else:
                sides.append(pooling_sequence(size, out, True, u=largest_u(size, out) / 2))
        return sides

    def call(self, inputs, training=False):
        rows, cols = self.sequences(inputs.shape, training)
        return fractional_max_pool(inputs, rows, cols, self.overlapping)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.output_sides(input_shape), input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "ratio": self.ratio,
                "pseudo_random": self.pseudo_random, "overlapping": self.overlapping,
                "seed": self.seed}
