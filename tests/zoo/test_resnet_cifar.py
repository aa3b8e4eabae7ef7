"""The CIFAR ResNets: the paper's layout, option A shortcuts, and the depths 6n + 2. Their
parameter counts against the paper's table 6 are in test_registry (EXPECTED)."""

import math

import keras
import numpy as np
import pytest

import zoo

pytestmark = pytest.mark.all_backends


def _trainable(model_or_layer):
    return sum(math.prod(w.shape) for w in model_or_layer.trainable_weights)


def test_three_stages_of_16_32_64_filters_on_32_16_8_maps():
    model = zoo.resnet20()
    shapes = {stage: model.get_layer(f"conv{stage}_block3_out").output.shape
              for stage in (2, 3, 4)}
    assert shapes == {2: (None, 32, 32, 16), 3: (None, 16, 16, 32), 4: (None, 8, 8, 64)}
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert len(convs) + len(dense) == 20  # 6n + 2 weighted layers, n = 3
    assert all(layer.kernel.shape[:2] == (3, 3) for layer in convs)  # option A: no 1x1


@pytest.mark.parametrize("size", [32, 33])
def test_option_a_shortcut_takes_every_second_pixel_and_pads_zero_channels(size):
    """The shortcut into stage 3 is x[:, ::2, ::2] with 8 zero channels on either side
    (16 -> 32), as the PyTorch re-implementations pad; an odd map (33) ends the same size
    as the strided convolution beside it."""
    model = zoo.resnet20(input_shape=(size, size, 3))
    probe = keras.Model(model.inputs, [model.get_layer("conv2_block3_out").output,
                                       model.get_layer("conv3_block1_0_pad").output,
                                       model.get_layer("conv3_block1_2_bn").output])
    x = np.random.default_rng(0).normal(size=(2, size, size, 3)).astype("float32")
    before, shortcut, residual = (keras.ops.convert_to_numpy(t) for t in probe(x))
    expected = np.pad(before[:, ::2, ::2, :], [(0, 0), (0, 0), (0, 0), (8, 8)])
    np.testing.assert_array_equal(shortcut, expected)
    assert shortcut.shape == residual.shape


def test_option_b_adds_the_two_projections_and_nothing_else():
    option_a, option_b = zoo.resnet20(), zoo.resnet20(shortcut="B")
    projections = [layer for layer in option_b.layers if "_0_" in layer.name]
    assert sorted(layer.name for layer in projections) == [
        "conv3_block1_0_bn", "conv3_block1_0_conv", "conv4_block1_0_bn", "conv4_block1_0_conv"]
    assert option_b.get_layer("conv3_block1_0_conv").kernel.shape == (1, 1, 16, 32)
    assert _trainable(option_b) - _trainable(option_a) == sum(
        _trainable(layer) for layer in projections)
    assert not [layer for layer in option_a.layers if layer.trainable_weights
                and "_0_" in layer.name]


def test_any_depth_6n_plus_2_and_clear_errors_otherwise():
    assert zoo.resnet_cifar(8, input_shape=(8, 8, 3)).get_layer("conv4_block1_out")
    # 50 and 152 are 6n + 2 too: the ImageNet ResNets' names were theirs by default.
    assert zoo.resnet_cifar(8).name == "resnet8" and zoo.resnet20().name == "resnet20"
    assert zoo.resnet_cifar(50, width=0.25).name == "resnet50_cifar"
    with pytest.raises(ValueError, match=r"`depth` of a CIFAR ResNet must be 6n \+ 2.*"
                                         r"received 21"):
        zoo.resnet_cifar(21)
    with pytest.raises(ValueError, match=r"received '20'"):
        zoo.resnet_cifar("20")
    with pytest.raises(ValueError, match=r"`shortcut` must be one of \('A', 'B'\); "
                                         r"received 'C'"):
        zoo.resnet20(shortcut="C")
    with pytest.raises(ValueError, match=r"ResNet-20 \(CIFAR\) needs inputs of at least 4x4"):
        zoo.resnet20(input_shape=(3, 3, 3))
