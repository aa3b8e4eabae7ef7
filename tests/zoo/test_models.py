"""Table-driven tests over the whole registry, plus what each family must get right."""

import functools
import inspect
import textwrap

import keras
import numpy as np
import pytest

import zoo
from tests.helpers import DEEP_RESNETS, run_model_test, run_python
from zoo.models import googlenet as googlenet_module

# A cheap configuration of every model, and its feature width (pooling="avg") there.
SMALL = {
    "alexnet": (dict(input_shape=(67, 67, 3), width=16), 256),
    "googlenet": (dict(input_shape=(32, 32, 3), width=0.125), 128),
    "resnet18": (dict(input_shape=(32, 32, 3), width=0.125), 64),
    "resnet34": (dict(input_shape=(32, 32, 3), width=0.125), 64),
    "resnet50": (dict(input_shape=(32, 32, 3), width=0.125), 256),
    "resnet101": (dict(input_shape=(32, 32, 3), width=0.125), 256),
    "resnet152": (dict(input_shape=(32, 32, 3), width=0.125), 256),
    # The CIFAR ResNets end at 1x1 from 4x4 (two stride-2 stages).
    **{name: (dict(input_shape=(4, 4, 3), width=0.5), 32) for name in (
        "resnet20", "resnet32", "resnet44", "resnet56", "resnet110")},
    **{name: (dict(input_shape=(32, 32, 3), width=0.0625), 32) for name in (
        "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn")},
}
FULL_FEATURES = {"alexnet": 256, "googlenet": 1024, "resnet18": 512, "resnet34": 512,
                 "resnet50": 2048, "resnet101": 2048, "resnet152": 2048, "resnet20": 64,
                 "vgg16": 512, "vgg16_bn": 512}
# Models that only change a depth of a family tested above at another depth: their
# classifier is checked, the rest of their code is their sibling's.
SAME_CODE = ("resnet101", "resnet152", "resnet32", "resnet44", "resnet56", "resnet110",
             "vgg11", "vgg13", "vgg19", "vgg11_bn", "vgg13_bn", "vgg19_bn")
# The checks of the common arguments are the family's builder's: one depth per family.
ONE_PER_FAMILY = [n for n in SMALL if n not in SAME_CODE]


def _tier(name):
    """The slow tier's mark for a deep ResNet (tests.helpers.DEEP_RESNETS), none otherwise."""
    return [pytest.mark.slow] if name in DEEP_RESNETS else []


def test_table_covers_the_registry():
    assert sorted(SMALL) == sorted(zoo.list_models())


HEADS = {
    "top": (dict(classes=7), lambda f: (None, 7)),
    "avg": (dict(include_top=False, pooling="avg"), lambda f: (None, f)),
    "max": (dict(include_top=False, pooling="max"), lambda f: (None, f)),
    "map": (dict(include_top=False), lambda f: (None, 1, 1, f)),
}
# ResNet-101/152 share ResNet-50's head code (ResNet-32/44/56 ResNet-20's): their
# classifier is enough (and cheaper).
HEAD_CASES = [(name, head) for name in SMALL for head in HEADS
              if head == "top" or name not in SAME_CODE]


@pytest.mark.parametrize("name, head_id", [pytest.param(n, h, id=f"{h}-{n}", marks=_tier(n))
                                           for n, h in HEAD_CASES])
def test_output_shapes(name, head_id):
    head, expected = HEADS[head_id]
    kwargs, features = SMALL[name]
    model = zoo.get_model(name, **kwargs, **head)
    assert model.output_shape == expected(features)
    x = np.random.default_rng(0).normal(size=(2,) + kwargs["input_shape"]).astype("float32")
    out = keras.ops.convert_to_numpy(model(x, training=False))  # predict: test_model
    assert out.shape == (2,) + expected(features)[1:] and np.isfinite(out).all()


@pytest.mark.parametrize("name", [pytest.param(n, marks=_tier(n))
                                  for n in SMALL if n != "alexnet" and (
                                      n in ("resnet101", "resnet152") or n not in SAME_CODE)])
def test_full_width_feature_extractor_on_variable_size_input(name):
    """include_top=False takes any size (VGG's top flattens a fixed map, like AlexNet's)."""
    model = zoo.get_model(name, include_top=False, pooling="avg", input_shape=(None, None, 3))
    assert model.output_shape == (None, FULL_FEATURES[name])


@pytest.fixture(scope="module")
def keras_feature_extractor():
    return keras.applications.ResNet50(include_top=False, weights=None, pooling="avg")


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_without_the_top_the_default_input_takes_any_size_as_keras_applications(
        name, keras_feature_extractor):
    """With no input_shape, keras.applications fixes the paper's size for a classifier
    and none for a feature extractor (obtain_input_shape's require_flatten): a zoo
    feature extractor locked to 224x224 refused 256x256 images."""
    reference = keras_feature_extractor
    kwargs = {k: v for k, v in SMALL[name][0].items() if k != "input_shape"}
    features = zoo.get_model(name, include_top=False, pooling="avg", **kwargs)
    assert features.input_shape == reference.input_shape == (None, None, None, 3)
    height, width, _ = SMALL[name][0]["input_shape"]
    for size in ((height, width), (height + 5, width + 9)):
        out = keras.ops.convert_to_numpy(features(np.zeros((1, *size, 3), "float32")))
        assert out.shape == (1, SMALL[name][1])
    size = zoo.model_info(name)["input_size"]
    assert zoo.get_model(name, classes=3, **kwargs).input_shape == (None, size, size, 3)


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_input_tensor(name):
    kwargs, _ = SMALL[name]
    inputs = keras.Input(kwargs["input_shape"], name="images")
    model = zoo.get_model(name, input_tensor=inputs, classes=3,
                          **{k: v for k, v in kwargs.items() if k != "input_shape"})
    assert model.inputs[0] is inputs and model.output_shape == (None, 3)


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(pooling="sum", include_top=False), r"`pooling` must be one of.*received 'sum'"),
        (dict(weights="instagram"), r"has no weights named 'instagram'; known: \['imagenet'"),
        (dict(classes=-1), r"`classes`.*received -1"),
        (dict(dropout=-0.1), r"`dropout`.*received -0.1"),
        (dict(input_shape=(7, 7, 3)), r"at least \d+x\d+.*received input shape \(7, 7, 3\)"),
        (dict(kernel_initializer="lecun"), r"`kernel_initializer` must be one of.*'lecun'"),
        (dict(activation="gelu"), r"`activation` must be one of.*received 'gelu'"),
        (dict(input_shape=(3, 96, 96)), r"is channels-last, as every zoo model: \(height, width, "
                                        r"channels\); received input shape \(3, 96, 96\), which "
                                        r"looks channels-first. Use \(96, 96, 3\)"),
        # A softmax over one class is 1.0 whatever the input: nothing could be learnt.
        (dict(classes=1), r"classes=1 with classifier_activation='softmax' predicts 1.0 for "
                          r"every input .* give classes=2, or classifier_activation='sigmoid'"),
        # (Keras' "Could not interpret activation function identifier", naming no choice)
        (dict(classifier_activation="softmx"), r"`classifier_activation` must be None "
                                               r"\(logits\), 'softmax', another of Keras' "
                                               r"activation names or a function; received "
                                               r"'softmx' \(did you mean 'softmax'\?\)"),
    ],
)
def test_bad_common_arguments(name, bad, message):
    if name.startswith("resnet") and zoo.model_info(name)["input_size"] == 32:  # CIFAR
        if "weights" in bad:  # no published weights: no names to offer
            message = r"`weights` must be None \(random initialisation\) or the path"
        if bad.get("input_shape") == (7, 7, 3):
            bad, message = dict(input_shape=(3, 3, 3)), r"at least 4x4.*\(3, 3, 3\)"
    with pytest.raises(ValueError, match=message):
        zoo.get_model(name, **{**SMALL[name][0], **bad})


def test_a_small_map_with_many_channels_is_not_taken_for_channels_first():
    """(4, 4, 16) is a CIFAR ResNet's smallest input with 16 channels, not (4, 16, 4)
    channels-first; and one sigmoid (or logit) output is a binary classifier."""
    model = zoo.resnet20(input_shape=(4, 4, 16), classes=1, classifier_activation="sigmoid")
    assert model.output_shape == (None, 1)
    assert zoo.resnet20(input_shape=(4, 4, 16), classes=1, include_top=False) is not None
    # Nor (4, 32, 16), which the CIFAR ResNets take (4 rows is their least): it was refused
    # as channels-first, with (32, 16, 4) offered, another model.
    assert zoo.resnet20(input_shape=(4, 32, 16), classes=3).output_shape == (None, 3)
    with pytest.raises(ValueError, match=r"looks channels-first. Use \(32, 32, 3\)"):
        zoo.resnet20(input_shape=(3, 32, 32))


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_a_channels_first_keras_is_refused_not_built_wrong(name):
    """keras.config.set_image_data_format("channels_first") once built a ResNet whose first
    layer gave (None, 224, 230, 9): refused in one line instead."""
    keras.config.set_image_data_format("channels_first")
    try:
        with pytest.raises(ValueError, match=r"channels-last.*'channels_first'.*"
                                             r"set_image_data_format\('channels_last'\)"):
            zoo.get_model(name, include_top=False, pooling="max")
    finally:
        keras.config.set_image_data_format("channels_last")


@pytest.mark.parametrize(
    "name, bad, message",
    [
        ("googlenet", dict(width=0), r"`width`.*positive number; received 0"),
        ("resnet18", dict(width=float("inf")), r"`width`.*finite positive number; received inf"),
        ("resnet18", dict(input_shape="224"), r"ResNet-18's `input_shape` must be a tuple "
                                              r"\(height, width, channels\) of positive "
                                              r"integers or None; received '224'"),
        ("alexnet", dict(input_shape=(227.0, 227, 3)), r"received \(227.0, 227, 3\)"),
        ("vgg11", dict(input_shape=5), r"`input_shape` must be a tuple .*received 5"),
        ("googlenet", dict(aux_logits=True, include_top=False), r"aux_logits=True.*include_top"),
        ("googlenet", dict(aux_logits=True, input_shape=(78, 78, 3)),
         r"at least 79x79 with aux_logits=True \(the auxiliary heads' 5x5 average pool needs "
         r"a 5x5 map at inception 4a\)"),
        ("resnet50", dict(stem="tiny"), r"`stem` must be one of.*received 'tiny'"),
        ("resnet50", dict(drop_path_rate=1.0), r"`drop_path_rate`.*received 1.0"),
        ("resnet18", dict(width="wide"), r"`width`.*received 'wide'"),
        # Switches given a string: "no" is true, and switched them on without a word.
        ("resnet18", dict(zero_init_residual="no"), r"`zero_init_residual` must be True or "
                                                    r"False; received 'no'"),
        ("resnet20", dict(zero_init_residual=1), r"`zero_init_residual` .*received 1\."),
        ("googlenet", dict(aux_logits="no"), r"`aux_logits` must be True or False"),
        ("resnet18", dict(include_top="no"), r"`include_top` must be True or False"),
        ("resnet18", dict(stem="cifar", input_shape=(7, 7, 3)), r"at least 8x8 \(its total "
                                                                 r"stride\); received"),
        ("alexnet", dict(lrn_across_towers="no", towers=2), r"`lrn_across_towers` \(None: "
                                                            r"the weights' way\) must be None, "
                                                            r"True or False; received 'no'"),
        ("alexnet", dict(ceil_mode="yes"), r"`ceil_mode` .*must be None, True or False"),
        # LRN settings for a network without LRN layers, or with one tower: ignored.
        ("alexnet", dict(norm="batch", lrn_params="caffe"), r"`lrn_params` sets the LRN "
                                                            r"layers, and norm='batch' builds "
                                                            r"none; received "
                                                            r"lrn_params='caffe'"),
        ("alexnet", dict(norm=None, lrn_params={"bias": 5.0}), r"norm=None builds none"),
        ("alexnet", dict(lrn_across_towers=True), r"`lrn_across_towers=True` .*needs towers=2 "
                                                  r"and norm='lrn'; received towers=1, "
                                                  r"norm='lrn'"),
        ("alexnet", dict(lrn_across_towers=True, towers=2, norm=None), r"received towers=2, "
                                                                       r"norm=None"),
    ],
)
def test_bad_family_arguments(name, bad, message):
    with pytest.raises(ValueError, match=message):
        zoo.get_model(name, **bad)


def test_vgg_batch_norm_is_a_switch():
    """vgg(11, batch_norm="no") built VGG-11-BN (and looked up vgg11_bn's weights); a
    NumPy bool is a bool."""
    with pytest.raises(ValueError, match=r"`batch_norm` must be True or False; received 'no'"):
        zoo.vgg(11, batch_norm="no")
    model = zoo.vgg(11, batch_norm=np.bool_(True), input_shape=(32, 32, 3), width=0.0625)
    assert model.name == "vgg11_bn"


def test_variants_take_positional_arguments_as_their_signature_says():
    """help(zoo.resnet18) shows keras.applications' positional order, as ResNet50(False,
    None) takes it, but the variants took keywords only; zoo.vgg16(batch_norm=True) built
    a vgg16_bn although vgg16's signature has no batch_norm."""
    for builder, shape in ((zoo.resnet18, (32, 32, 3)), (zoo.resnet20, (8, 8, 3)),
                           (zoo.vgg16_bn, (32, 32, 3))):
        positional = [False, None, None, shape, "max", 4, None]  # ..., pooling, classes, act
        assert list(inspect.signature(builder).parameters)[:3] == [
            "include_top", "weights", "input_tensor"]
        model = builder(*positional, "features", 0.5, 0.0625)  # name, dropout, width
        assert model.name == "features" and len(model.output_shape) == 2
        bound = inspect.signature(builder).bind(*positional, "features", 0.5, 0.0625)
        assert bound.arguments["width"] == 0.0625 and bound.arguments["pooling"] == "max"
    assert zoo.vgg16_bn(input_shape=(32, 32, 3), width=0.0625).get_layer("block1_conv1_bn")
    too_many = [False, None, None, (32, 32, 3), "max", 4, None, None, 0.5, 0.0625, "he",
                "relu", None, True]  # a 14th: vgg's batch_norm, past the signature's
    with pytest.raises(ValueError, match=r"vgg16 takes at most 13 positional arguments.*"
                                         r"received 14"):
        zoo.vgg16(*too_many)
    for name, received in (("vgg16", True), ("vgg16_bn", False)):
        with pytest.raises(ValueError, match=rf"{name} sets batch_norm={not received} itself"
                           rf".*received batch_norm={received}\. Use vgg16"):
            getattr(zoo, name)(batch_norm=received)


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_name_none_is_the_default_name(name):
    """alexnet(name=None) and googlenet(name=None) were named "functional" (Keras' own
    default), where the other families took their default name."""
    kwargs, _ = SMALL[name]
    assert zoo.get_model(name, name=None, **kwargs).name == zoo.get_model(name, **kwargs).name


ACTIVATION_LAYERS = {"leaky_relu": keras.layers.LeakyReLU, "prelu": keras.layers.PReLU,
                     "elu": keras.layers.ELU}


def _channels_after_activations(model, kind):
    return sum(layer.output.shape[-1] for layer in model.layers if isinstance(layer, kind))


@pytest.mark.parametrize("name", ["alexnet", "googlenet", "resnet18"])  # resnet50: same code
@pytest.mark.parametrize("activation", list(ACTIVATION_LAYERS))
def test_activation_option_replaces_every_relu(name, activation):
    kwargs, _ = SMALL[name]
    default = zoo.get_model(name, **kwargs)
    model = zoo.get_model(name, **kwargs, activation=activation)
    relus = [l.name for l in model.layers
             if getattr(getattr(l, "activation", None), "__name__", "") == "relu"
             or isinstance(l, keras.layers.ReLU)]
    assert relus == []
    kind = ACTIVATION_LAYERS[activation]
    # One activation layer per ReLU of the default model, so as many activated channels.
    default_channels = sum(
        l.output.shape[-1] for l in default.layers
        if getattr(getattr(l, "activation", None), "__name__", "") == "relu")
    assert _channels_after_activations(model, kind) == default_channels
    # PReLU learns one slope per channel (He et al.), the others add no parameters.
    extra = default_channels if activation == "prelu" else 0
    assert model.count_params() == default.count_params() + extra
    x = np.random.default_rng(0).normal(size=(2,) + kwargs["input_shape"]).astype("float32")
    assert np.isfinite(keras.ops.convert_to_numpy(model(x, training=False))).all()


def test_activation_layers_compute_the_named_functions():
    model = zoo.resnet18(input_shape=(8, 8, 3), classes=3, width=0.25, stem="cifar",
                         activation="leaky_relu")
    layer = model.get_layer("conv1_leaky_relu")
    x = np.array([[-2.0, 0.0, 3.0]], "float32")
    np.testing.assert_allclose(layer(x), [[-0.02, 0.0, 3.0]], rtol=1e-6)
    prelu = zoo.alexnet(input_shape=(67, 67, 3), classes=3, width=8, activation="prelu")
    alpha = prelu.get_layer("conv1_prelu").get_weights()[0]
    assert alpha.shape == (1, 1, 96) and np.all(alpha == 0.25)
    elu = zoo.googlenet(input_shape=(32, 32, 3), width=0.125, activation="elu")
    np.testing.assert_allclose(elu.get_layer("conv1_7x7_s2_elu")(x), [[np.expm1(-2.0), 0, 3]],
                               rtol=1e-6)


@pytest.mark.parametrize("name, layer", [("alexnet", "conv3"), ("googlenet", "inception_3a_3x3"),
                                         ("resnet18", "conv3_block1_1_conv")])
@pytest.mark.parametrize("init", ["paper", "he", "glorot", "xavier"])
def test_kernel_initializer_option_sets_the_kernel_scale(name, layer, init):
    # AlexNet's smallest input: conv3's kernel is the same at any size, fc6 is 36x smaller.
    model = zoo.get_model(name, input_shape=(67, 67, 3) if name == "alexnet" else (64, 64, 3),
                          kernel_initializer=init)
    kernel = model.get_layer(layer).kernel.numpy()
    fan_in = np.prod(kernel.shape[:-1])
    fan_out = np.prod(kernel.shape[:2]) * kernel.shape[-1]
    if init == "paper":
        expected = 0.01
    elif init == "glorot":  # uniform with variance 2 / (fan_in + fan_out)
        expected = np.sqrt(2.0 / (fan_in + fan_out))
    elif init == "xavier":  # Caffe's filler: U(-sqrt(3 / fan_in), sqrt(3 / fan_in))
        expected = np.sqrt(1.0 / fan_in)
        assert np.abs(kernel).max() <= np.sqrt(3.0 / fan_in)
    else:  # He: variance 2 / fan_in (ResNet: 2 / fan_out, torchvision's mode)
        expected = np.sqrt(2.0 / (fan_out if name == "resnet18" else fan_in))
    np.testing.assert_allclose(kernel.std(), expected, rtol=0.05)


def test_googlenet_starts_as_the_reference_bvlc_googlenet():
    """bvlc_googlenet's train_val.prototxt: every convolution and the aux heads' fc use
    Caffe's xavier filler (uniform, variance 1 / fan_in) with a constant bias of 0.2; the
    three classifiers use xavier with a bias of 0."""
    model = zoo.googlenet(input_shape=(96, 96, 3), width=0.5, aux_logits=True, classes=10)
    checked = 0
    for layer in model.layers:
        if not isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            continue
        kernel, bias = layer.kernel.numpy(), layer.bias.numpy()
        limit = np.sqrt(3.0 / np.prod(kernel.shape[:-1]))
        assert np.abs(kernel).max() <= limit + 1e-7, layer.name
        if kernel.size > 5000:  # enough draws for the standard deviation
            assert kernel.std() == pytest.approx(limit / np.sqrt(3), rel=0.1), layer.name
        classifier = layer.name.endswith("predictions")
        np.testing.assert_array_equal(bias, np.float32(0.0 if classifier else 0.2),
                                      err_msg=layer.name)
        checked += 1
    # 57 convolutions, the classifier, and per aux head: conv, fc and classifier
    assert checked == 57 + 1 + 2 * 3


def test_default_initializers_are_unchanged():
    # AlexNet: the paper's N(0, 0.01); ResNet: He fan-out.
    assert zoo.alexnet().get_layer("conv3").kernel.numpy().std() == pytest.approx(0.01, rel=0.02)
    kernel = zoo.resnet18().get_layer("conv3_block1_1_conv").kernel.numpy()
    assert kernel.std() == pytest.approx(np.sqrt(2.0 / (9 * 128)), rel=0.03)


def test_resnet_depth_must_be_known():
    with pytest.raises(ValueError, match=r"`depth` must be one of \[18, 34, 50, 101, 152\]"):
        zoo.resnet(20)
    # A value that cannot be looked up (a list; an array) is the same one line, where the
    # lookup in the table of depths raised TypeError: unhashable type.
    for depth in ([18], np.array([18, 34]), np.array(18), np.array([18])):
        with pytest.raises(zoo.UserError, match=r"`depth` must be one of \[18, 34, 50, 101, "
                                                r"152\]; received (\[18\]|array)"):
            zoo.resnet(depth)
    # 18.0 equals 18: it built "resnet18.0"; and a depth without weights was reported as
    # "resnet20 has no weights named 'imagenet'" before the depth was looked at.
    for depth in (18.0, True):
        with pytest.raises(zoo.UserError, match=rf"`depth` must be one of.*received {depth}"):
            zoo.resnet(depth)
    with pytest.raises(zoo.UserError, match=r"`depth` must be one of.*received 20\."):
        zoo.resnet(20, weights="imagenet")
    assert zoo.resnet(np.int64(18), input_shape=(32, 32, 3)).name == "resnet18"
    assert zoo.resnet_cifar(np.int64(8), width=0.25).name == "resnet8"  # (NumPy's: refused)


def test_towers_of_two_point_zero_are_one_line():
    """2.0 == 2 passed the check, then range() failed inside the builder (a TypeError)."""
    with pytest.raises(zoo.UserError, match=r"`towers` must be 1.*or 2.*received 2.0"):
        zoo.alexnet(towers=2.0, input_shape=(67, 67, 3), include_top=False)


def test_a_relu_resnet_file_is_plain_keras_and_an_elu_one_pads_its_pool_with_minus_inf(
        tmp_path):
    """Keras alone loads a ReLU ResNet's file in a fresh process (the README says so; the
    stem pool's padding is Keras' ZeroPadding2D there, as after a ReLU zeros are -inf's
    equal); an ELU ResNet's stem pads -inf (zoo.layers.MaxPadding2D)."""
    path = str(tmp_path / "r.keras")
    zoo.resnet18(input_shape=(32, 32, 3), classes=3, width=0.125).save(path)
    out = run_python("import sys, keras\n"
                     f"model = keras.models.load_model({path!r})\n"
                     "assert not any(m.split('.')[0] in ('zoo', 'ensembles', 'data') "
                     "for m in sys.modules), sorted(sys.modules)\n"
                     "print(type(model.get_layer('pool1_pad')).__name__)\n", cwd=str(tmp_path))
    assert out.stdout.split()[-1] == "ZeroPadding2D"
    elu = zoo.resnet18(input_shape=(32, 32, 3), classes=3, width=0.125, activation="elu")
    assert type(elu.get_layer("pool1_pad")).__name__ == "MaxPadding2D"


@pytest.mark.parametrize("weights", ["tv_in1k", "file"])
def test_converted_weights_refuse_another_activation(tmp_path, monkeypatch, weights):
    """torchvision's and Caffe's weights were trained with ReLU: with PReLU a Caffe AlexNet
    failed inside the reader (int('1_prelu')), an ELU ResNet loaded them and gave other
    numbers."""
    if weights == "file":
        from tests.zoo.test_caffe import alexnet_params, write_caffemodel

        weights = str(tmp_path / "bvlc_alexnet.caffemodel")
        write_caffemodel(weights, alexnet_params((1, 1), 16, 10, np.random.default_rng(0)))
        build = functools.partial(zoo.alexnet, include_top=False, activation="prelu")
    else:  # the cached file's name, not read: the check comes first
        monkeypatch.setattr("zoo.pretrained.weights_file", lambda entry: entry.file_name)
        build = functools.partial(zoo.resnet18, activation="elu")
    with pytest.raises(zoo.UserError, match=r"\.(pth|caffemodel) holds weights trained with "
                                            r"ReLU; received activation='(elu|prelu)'"):
        build(weights=weights)


# --- ResNet -------------------------------------------------------------------------------


@pytest.mark.parametrize("name, projections", [("resnet18", 3), ("resnet50", 4)])
def test_resnet_projection_shortcuts_only_where_the_shape_changes(name, projections):
    model = zoo.get_model(name)
    shortcut_convs = [l.name for l in model.layers if l.name.endswith("_0_conv")]
    assert len(shortcut_convs) == projections
    assert all("block1_" in n for n in shortcut_convs)
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert not any(c.use_bias for c in convs)


def test_resnet50_stride_sits_on_the_3x3_convolution():
    model = zoo.resnet50()
    assert model.get_layer("conv3_block1_1_conv").strides == (1, 1)
    assert model.get_layer("conv3_block1_2_conv").strides == (2, 2)
    assert model.get_layer("conv3_block1_2_conv").kernel_size == (3, 3)
    assert model.get_layer("conv5_block3_out").output.shape[1:] == (7, 7, 2048)


def test_resnet_zero_init_residual_makes_blocks_start_as_identity():
    model = zoo.resnet18(input_shape=(32, 32, 3), width=0.25, zero_init_residual=True)
    probe = keras.Model(model.inputs, [model.get_layer("conv2_block1_out").output,
                                       model.get_layer("conv2_block2_out").output])
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    first, second = probe.predict(x, verbose=0)
    np.testing.assert_allclose(second, first, rtol=1e-6)  # relu(first + 0) == first
    gamma = model.get_layer("conv2_block2_2_bn").gamma
    assert not np.any(keras.ops.convert_to_numpy(gamma))


def test_resnet_stochastic_depth_rates_grow_linearly_and_inference_is_deterministic():
    model = zoo.resnet18(input_shape=(32, 32, 3), width=0.125, drop_path_rate=0.3)
    rates = [l.rate for l in model.layers if l.name.endswith("_drop_path")]
    # Huang et al.'s linear rule: block l of L = 8 drops its branch with rate l / L * 0.3.
    np.testing.assert_allclose(rates, [0.0375, 0.075, 0.1125, 0.15, 0.1875, 0.225, 0.2625,
                                       0.3], rtol=1e-6)
    x = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(model(x, training=False), model(x, training=False))
    branch = keras.Model(model.input, [model.get_layer("conv5_block2_2_bn").output,
                                        model.get_layer("conv5_block2_drop_path").output])
    x = np.random.default_rng(1).normal(size=(64, 32, 32, 3)).astype("float32")
    kept, dropped = (keras.ops.convert_to_numpy(t).reshape(64, -1)
                     for t in branch(x, training=True))
    # Each example's residual branch is either zeroed whole or scaled by 1 / (1 - 0.3).
    zeroed = np.all(dropped == 0, axis=1)
    np.testing.assert_allclose(dropped[~zeroed], kept[~zeroed] / 0.7, rtol=1e-5, atol=1e-6)
    # Binomial(64, 0.3): mean 19.2, standard deviation 3.67; within 3 of them (9 to 30).
    expected, sigma = 64 * 0.3, (64 * 0.3 * 0.7) ** 0.5
    assert abs(zeroed.sum() - expected) <= 3 * sigma, zeroed.sum()


@pytest.mark.parametrize("name, kwargs, subsampled", [
    # 4 and 8 channels enter conv3 and conv4's projections, 16 conv5's: strided there.
    ("resnet18", dict(width=0.0625, stem="cifar"), ["conv3_block1_0", "conv4_block1_0"]),
    ("resnet18", dict(width=0.25), []),  # 16 channels and more: the strided convolution
    ("resnet50", dict(width=0.03125), ["conv3_block1_0"]),  # 8 channels, then 16 and 32
    ("resnet20", dict(width=0.5, shortcut="B"), ["conv3_block1_0"]),  # 8, then 16 channels
])
def test_a_narrow_strided_projection_subsamples_then_convolves_as_keras_strided_conv(
        name, kwargs, subsampled):
    # TensorFlow's oneDNN weight gradient of a strided 1x1 convolution with fewer than 16
    # input channels corrupts the heap (tests/zoo/training/test_recipe.py has the crash).
    model = zoo.get_model(name, input_shape=(33, 33, 3), classes=3, **kwargs)
    assert [l.name[:-len("_subsample")] for l in model.layers
            if l.name.endswith("_subsample")] == subsampled
    for conv in (l for l in model.layers if isinstance(l, keras.layers.Conv2D)):
        if conv.kernel_size == (1, 1) and conv.strides != (1, 1):
            assert conv.input.shape[-1] >= 16, conv.name
    x = np.random.default_rng(0).normal(size=(2, 33, 33, 3)).astype("float32")
    for prefix in subsampled:
        conv = model.get_layer(f"{prefix}_conv")
        block_input = model.get_layer(f"{prefix}_subsample").input
        probe = keras.Model(model.input, [block_input, conv.output])
        inputs, got = probe.predict(x, verbose=0)
        strided = keras.layers.Conv2D(conv.filters, 1, strides=2, padding="same", use_bias=False)
        strided.build(inputs.shape)
        strided.set_weights(conv.get_weights())
        assert got.shape[1:3] == ((inputs.shape[1] + 1) // 2,) * 2  # odd sides too
        np.testing.assert_allclose(got, strided(inputs), rtol=1e-5, atol=1e-6)


NARROW_RESNET_FIT = textwrap.dedent("""
    import numpy as np, keras, zoo
    rng = np.random.default_rng(0)
    model = zoo.resnet18(input_shape=(16, 16, 3), classes=3, width=0.0625, stem="cifar")
    model.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
    x, y = rng.random((108, 16, 16, 3)).astype("float32"), rng.integers(0, 3, 108)
    loss = model.fit(x, y, batch_size=105, epochs=8, verbose=0).history["loss"]
    print(loss[0], loss[-1])
""")


@pytest.mark.slow
def test_a_narrow_resnet_trains_on_odd_batches_under_tensorflow_without_corrupting_memory():
    # Batches of 105 and 3 through projections with 4 and 8 input channels, on two threads:
    # with strided 1x1 convolutions there, TensorFlow's oneDNN kernel aborted the process
    # ("corrupted double-linked list", "munmap_chunk(): invalid pointer") in 5 runs of 5.
    result = run_python(NARROW_RESNET_FIT, check=False, timeout=300,
                        env={"KERAS_BACKEND": "tensorflow", "TF_NUM_INTRAOP_THREADS": "2"})
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    first, last = map(float, result.stdout.split())
    assert last < first


def test_resnet_cifar_stem():
    model = zoo.resnet18(input_shape=(32, 32, 3), stem="cifar", include_top=False)
    assert model.output_shape == (None, 4, 4, 512)  # total stride 8
    assert "pool1_pool" not in [l.name for l in model.layers]
    assert model.get_layer("conv1_conv").kernel_size == (3, 3)


# --- GoogLeNet ----------------------------------------------------------------------------


def test_googlenet_pools_a_side_of_unknown_size_as_keras_same_and_a_known_one_as_caffe():
    """input_shape=(99, None, 3): the known odd rows pool without a window past the edge,
    the unknown columns as "same" (Caffe's on the even sides 224 gives): the map a fixed
    99x224 model gives. Both sides once took the known side's mode (27 columns, not 28)."""
    fixed = zoo.googlenet(include_top=False, input_shape=(99, 224, 3), width=0.125)
    open_width = zoo.googlenet(include_top=False, input_shape=(99, None, 3), width=0.125)
    x = np.zeros((1, 99, 224, 3), "float32")
    for pool in ("pool1_3x3_s2", "pool2_3x3_s2", "pool3_3x3_s2", "pool4_3x3_s2"):
        maps = keras.Model(open_width.inputs, open_width.get_layer(pool).output)
        assert maps.predict(x, verbose=0).shape[1:] == fixed.get_layer(pool).output.shape[1:]
    assert fixed.get_layer("pool2_3x3_s2").output.shape[1:3] == (12, 28)


def test_googlenet_inception_modules_follow_the_paper_table():
    model = zoo.googlenet()
    widths = [model.get_layer(f"inception_{s}_output").output.shape[-1]
              for s in googlenet_module.INCEPTION]
    assert widths == [256, 480, 512, 512, 512, 528, 832, 832, 1024]
    assert model.get_layer("inception_3a_5x5").kernel_size == (5, 5)  # not torchvision's 3x3
    assert model.get_layer("inception_5b_output").output.shape[1:3] == (7, 7)
    lrn = [l for l in model.layers if isinstance(l, zoo.layers.LocalResponseNormalization)]
    assert len(lrn) == 2
    assert not any(isinstance(l, keras.layers.BatchNormalization) for l in model.layers)
    assert model.get_layer("dropout").rate == 0.4


def test_googlenet_aux_heads_and_paper_counts():
    model = zoo.googlenet(aux_logits=True)
    assert model.count_params() == 13_378_280
    assert isinstance(model, zoo.GoogLeNetWithAuxHeads)
    assert model.output_shape == (None, 1000)  # one output to the outside
    assert model.get_layer("aux1_pool").output.shape[1:] == (4, 4, 512)
    assert model.get_layer("aux2_pool").output.shape[1:] == (4, 4, 528)
    assert model.get_layer("aux1_dropout").rate == 0.7
    inference = zoo.without_aux(model)
    assert inference.count_params() == 6_998_552
    # It shares the trained model's weights: the very same variables.
    assert {id(w) for w in inference.weights} <= {id(w) for w in model.weights}


def test_googlenet_owns_its_aux_heads_one_output_outside_paper_loss_inside(tmp_path):
    """Compiled and fitted as any classifier, with the label once; the training loss is
    Keras' own cross-entropy of the main head plus 0.3 times each auxiliary head's; the
    metrics, evaluation, prediction, symbolic calls and a .keras round trip see one head."""
    model = zoo.googlenet(aux_logits=True, input_shape=(79, 79, 3), width=0.125, classes=5)
    model.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy",
                  metrics=["accuracy"], run_eagerly=True)  # graph mode: test_recipe
    x = np.random.default_rng(0).normal(size=(8, 79, 79, 3)).astype("float32")
    y = np.arange(8) % 5
    before = model.get_layer("aux1_fc").kernel.numpy().copy()
    logs = model.train_on_batch(x, y, return_dict=True)
    assert set(logs) == {"loss", "accuracy"}
    assert np.abs(model.get_layer("aux1_fc").kernel.numpy() - before).max() > 0  # trained
    main, aux1, aux2 = model(x, training=True)  # one draw of the dropout masks
    cross_entropy = keras.losses.SparseCategoricalCrossentropy()
    expected = cross_entropy(y, main) + 0.3 * cross_entropy(y, aux1) + 0.3 * cross_entropy(y, aux2)
    loss = model.compute_loss(x=x, y=y, y_pred=[main, aux1, aux2])
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    assert float(model.compute_loss(x=x, y=y, y_pred=main)) == pytest.approx(
        float(cross_entropy(y, main)), rel=1e-5)  # evaluation: the main head alone
    inference = googlenet_module.without_aux(model)
    predictions = model.predict(x, verbose=0)
    np.testing.assert_allclose(inference(x, training=False), predictions, rtol=1e-6)
    assert model(keras.Input((79, 79, 3))).shape == (None, 5)
    # Model surgery keeps the classifier alone (`output` was the three heads' list).
    assert model.output.shape == model.output_shape == (None, 5) and len(model.outputs) == 3
    surgery = keras.Model(model.input, model.output)
    assert len(surgery.outputs) == 1 and "aux1_fc" not in [l.name for l in surgery.layers]
    np.testing.assert_allclose(surgery(x, training=False), predictions, rtol=1e-6)
    model.save(tmp_path / "g.keras")
    loaded = zoo.load_model(tmp_path / "g.keras")
    assert isinstance(loaded, zoo.GoogLeNetWithAuxHeads)
    np.testing.assert_allclose(loaded(x, training=False), predictions, rtol=1e-6)
    assert googlenet_module.without_aux(inference) is inference  # nothing to drop


@pytest.mark.slow  # a process of its own: no model module imported before the file loads
def test_a_trained_googlenet_with_aux_heads_loads_in_the_zoo_commands(tmp_path):
    """zoo info, evaluate, ensemble, export, predict and distill load with
    zoo.saving.load_model, which did not import the module registering
    GoogLeNetWithAuxHeads: "it names a class this process does not know"."""
    from tests.helpers import run_python

    path = tmp_path / "g.keras"
    zoo.googlenet(aux_logits=True, input_shape=(79, 79, 3), width=0.125, classes=5).save(path)
    done = run_python("import sys; from zoo.cli import main; sys.exit(main(['info', "
                      f"{str(path)!r}]))", check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "GoogLeNetWithAuxHeads" not in done.stderr


# --- every family: what every Keras model must do (run_model_test) --------------------------

ALL = pytest.mark.all_backends  # `make test` runs these under JAX too


@pytest.mark.parametrize(
    "name, kwargs",
    [
        # JAX compiles GoogLeNet slowly on a CPU (45 s a configuration): under JAX, make
        # test runs one configuration of each other family (the GoogLeNet layers are
        # AlexNet's and ResNet's; a configuration takes JAX 8-12 s to compile from a fresh
        # clone). The towers and the CIFAR shortcuts are checked under JAX in
        # test_alexnet.py and test_resnet_cifar.py.
        pytest.param("alexnet", dict(input_shape=(67, 67, 3), width=16), marks=ALL),
        ("alexnet", dict(input_shape=(67, 67, 3), width=16, towers=2, norm="batch")),
        ("googlenet", dict(input_shape=(32, 32, 3), width=0.125)),
        ("googlenet", dict(input_shape=(79, 79, 3), width=0.125, aux_logits=True)),
        pytest.param("resnet18", dict(input_shape=(32, 32, 3), width=0.25, stem="cifar",
                                      drop_path_rate=0.1), marks=ALL),
        ("resnet50", dict(input_shape=(32, 32, 3), width=0.125, dropout=0.2)),
        ("resnet20", dict(input_shape=(16, 16, 3), width=0.5, drop_path_rate=0.1)),
        pytest.param("vgg11_bn", dict(input_shape=(32, 32, 3), width=0.0625), marks=ALL),
    ],
    ids=["alexnet", "alexnet-two-towers-batchnorm", "googlenet", "googlenet-aux",
         "resnet18-cifar-drop-path", "resnet50", "resnet20-drop-path", "vgg11-bn"],
)
def test_model(name, kwargs, tmp_path):
    run_model_test(functools.partial(zoo.get_model, name, classes=4), kwargs, tmp_path)
