import inspect

import pytest

import zoo
from tests.helpers import DEEP_RESNETS
from zoo import registry

EXPECTED = {  # trainable parameters at the default size, 1000 classes; GMACs
    "alexnet": (62_378_344, 1.14),
    "googlenet": (6_998_552, 1.58),
    "resnet18": (11_689_512, 1.81),
    "resnet34": (21_797_672, 3.66),
    "resnet50": (25_557_032, 4.09),
    "resnet101": (44_549_160, 7.80),
    "resnet152": (60_192_808, 11.51),
    # The CIFAR ResNets (32x32, 10 classes): He et al.'s table 6 (0.27M, 0.46M, 0.66M,
    # 0.85M, 1.7M), exactly as the public PyTorch re-implementations count them.
    "resnet20": (269_722, 0.04),
    "resnet32": (464_154, 0.07),
    "resnet44": (658_586, 0.10),
    "resnet56": (853_018, 0.13),
    "resnet110": (1_727_962, 0.25),
    # torchvision's vgg11 ... vgg19_bn (trainable parameters; GMACs as torchvision reports)
    "vgg11": (132_863_336, 7.61),
    "vgg13": (133_047_848, 11.31),
    "vgg16": (138_357_544, 15.47),
    "vgg19": (143_667_240, 19.63),
    "vgg11_bn": (132_868_840, 7.61),
    "vgg13_bn": (133_053_736, 11.31),
    "vgg16_bn": (138_365_992, 15.47),
    "vgg19_bn": (143_678_248, 19.63),
}
CIFAR = ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110")
COMMON_ARGS = ["include_top", "weights", "input_tensor", "input_shape", "pooling", "classes",
               "classifier_activation", "name", "dropout", "width"]


def test_list_models_in_natural_order():
    assert zoo.list_models() == [
        "alexnet", "googlenet", "resnet18", "resnet20", "resnet32", "resnet34", "resnet44",
        "resnet50", "resnet56", "resnet101", "resnet110", "resnet152", "vgg11", "vgg11_bn",
        "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"]


# Building a VGG (133-144M weights) takes 3-10 s here: the fast tier checks one (vgg11_bn,
# whose BatchNorm statistics make total_params differ from params) and each ResNet family's
# shallower depths; the slow tier checks the others (and the deep ResNets,
# tests.helpers.DEEP_RESNETS).
SLOW_TO_BUILD = ("vgg11", "vgg13", "vgg16", "vgg19", "vgg13_bn", "vgg16_bn", "vgg19_bn",
                 *DEEP_RESNETS)


def test_model_info_answers_a_copy():
    """model_info handed out its cached dict: one caller's edit changed every answer."""
    info = zoo.model_info("alexnet")
    info["params"] = 0
    assert zoo.model_info("alexnet")["params"] == 62_378_344


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.slow)
                                  if name in SLOW_TO_BUILD else name for name in EXPECTED])
def test_model_info(name):
    """The static facts `zoo list` prints equal the built model's, and the papers'."""
    info = zoo.model_info(name)
    assert info == registry.measured_info(name)
    params, gmacs = EXPECTED[name]
    assert info["params"] == params
    assert info["macs"] / 1e9 == pytest.approx(gmacs, abs=0.005)
    assert info["input_size"] == {"alexnet": 227, **dict.fromkeys(CIFAR, 32)}.get(name, 224)
    assert info["total_params"] >= params
    assert info["paper"]


def test_count_macs_counts_nested_models_and_names_what_it_cannot_count():
    """An ensemble's members are nested models: their MACs were left out (0 for an
    ensemble); a name or a model of unknown spatial sizes was Python's error."""
    import keras

    import ensembles

    member = zoo.resnet18(input_shape=(64, 64, 3), classes=10, width=0.25)
    other = zoo.alexnet(input_shape=(67, 67, 3), classes=10, width=16)
    assert zoo.count_macs(member) > 0
    resized = keras.Sequential([keras.Input((67, 67, 3)), keras.layers.Resizing(64, 64),
                                member])
    assert zoo.count_macs(resized) == zoo.count_macs(member)
    mixed = ensembles.Ensemble([resized, other])
    assert zoo.count_macs(mixed) == zoo.count_macs(member) + zoo.count_macs(other)
    twin = zoo.resnet18(input_shape=(64, 64, 3), classes=10, width=0.25)
    assert zoo.count_macs(ensembles.Ensemble([member, twin])) == 2 * zoo.count_macs(member)
    with pytest.raises(ValueError, match=r"count_macs takes a built keras.Model; received "
                                         r"'resnet18' \(str\) \(zoo.model_info\('resnet18'\)"):
        zoo.count_macs("resnet18")
    with pytest.raises(ValueError, match=r"count_macs needs the spatial sizes: 'conv1_conv' "
                                         r"of 'resnet18' outputs \(None, None, None, 16\)"):
        zoo.count_macs(zoo.resnet18(input_shape=(None, None, 3), width=0.25))


@pytest.mark.parametrize("name", list(EXPECTED))
def test_every_builder_has_the_common_signature(name):
    entry = registry.get_entry(name)
    builder = entry.builder
    assert builder.__name__ == name  # registered under its own name
    params = entry.arguments  # resnet18(**kwargs) takes resnet's, less depth
    assert list(params)[: len(COMMON_ARGS) - 2] == COMMON_ARGS[:-2]
    assert {"dropout", "width"} <= set(params)
    assert builder.__doc__ and ">>> " in builder.__doc__  # one runnable example
    # help(zoo.resnet18) and a notebook's `?` show the arguments, not (**kwargs).
    assert list(inspect.signature(builder).parameters) == list(params)


def test_get_model_passes_arguments():
    model = zoo.get_model("resnet18", input_shape=(32, 32, 3), classes=3, stem="cifar")
    assert model.name == "resnet18" and model.output_shape == (None, 3)


def test_unknown_model_lists_available_names():
    with pytest.raises(ValueError) as err:
        zoo.get_model("resnet5")
    assert str(err.value) == (
        "Unknown model 'resnet5'. Did you mean 'resnet56'? Available: alexnet, googlenet, "
        "resnet18, resnet20, resnet32, resnet34, resnet44, resnet50, resnet56, resnet101, "
        "resnet110, resnet152, vgg11, vgg11_bn, vgg13, vgg13_bn, vgg16, vgg16_bn, vgg19, "
        "vgg19_bn."
    )
    with pytest.raises(ValueError, match=r"resnet18 has no argument 'depth'\."):
        zoo.get_model("resnet18", depth=34)  # the variant fixes it
    # keras.applications' spellings: no suggestion came for these (VGG16: a ratio of 0.4);
    # a name that is no string was a TypeError (unhashable).
    for typed, meant in (("VGG16", "vgg16"), ("VGG16_BN", "vgg16_bn"),
                         ("ResNet50", "resnet50"), ("resnet-50", "resnet50"),
                         ("AlexNet", "alexnet"), ("googLeNet_", "googlenet")):
        with pytest.raises(ValueError, match=rf"Unknown model '{typed}'\. Did you mean "
                                             rf"'{meant}'\?"):
            zoo.get_model(typed)
    with pytest.raises(ValueError, match=r"A model name must be a string; received list"):
        zoo.get_model(["alexnet"])
    with pytest.raises(ValueError, match=r"A model name must be a string; received list"):
        zoo.model_info(["alexnet"])  # (the cache's TypeError: unhashable type)
    with pytest.raises(ValueError, match=r"`pattern` must be a string.*received 5"):
        zoo.list_models(5)  # (fnmatch's TypeError)
    # keras.applications' spellings: "ResNet*" found nothing, without a word.
    assert zoo.list_models("ResNet1*") == zoo.list_models("resnet1*") == [
        "resnet18", "resnet101", "resnet110", "resnet152"]
    assert zoo.list_models("VGG16*") == ["vgg16", "vgg16_bn"]


def test_register_model_refuses_a_second_builder_under_a_taken_name():
    @zoo.register_model(paper="test", input_size=8)
    def tiny_twice(**kwargs):
        return kwargs

    def other(**kwargs):
        return kwargs

    other.__name__ = "tiny_twice"
    try:
        with pytest.raises(ValueError, match=r"A model named 'tiny_twice' is already registered"):
            zoo.register_model(paper="test", input_size=8)(other)
        zoo.register_model(paper="test", input_size=8)(tiny_twice)  # the same: a re-run
        other.__name__ = "resnet50"
        with pytest.raises(ValueError, match=r"'resnet50' belongs to the built-in model"):
            zoo.register_model(paper="test", input_size=8)(other)
    finally:
        registry._MODELS.pop("tiny_twice")


def test_resolve_turns_a_name_a_builder_or_a_model_into_a_model():
    built = zoo.resolve("resnet18", input_shape=(32, 32, 3), classes=3, width=0.25)
    assert built.name == "resnet18" and built.output_shape == (None, 3)
    assert zoo.resolve(built) is built
    assert zoo.resolve(lambda classes: zoo.resnet18(input_shape=(32, 32, 3), classes=classes,
                                                    width=0.25), classes=4).output_shape == (
        None, 4)
    with pytest.raises(ValueError, match=r"cannot change the built model 'resnet18'"):
        zoo.resolve(built, classes=5)
    with pytest.raises(ValueError, match=r"returned dict, not a keras.Model"):
        zoo.resolve(lambda: {})
    with pytest.raises(ValueError, match=r"a registry name, a function.*received int"):
        zoo.resolve(3)


def test_register_model_keys_on_the_function_name():
    @zoo.register_model(paper="test", input_size=8)
    def tiny_for_registry_test(**kwargs):
        return kwargs

    try:
        assert zoo.get_model("tiny_for_registry_test", a=1) == {"a": 1}
    finally:
        registry._MODELS.pop("tiny_for_registry_test")
    import functools  # a partial has no __name__: AttributeError, naming nothing

    with pytest.raises(ValueError, match=r"register_model decorates a builder function, whose "
                                         r"__name__ is the model's name; received partial"):
        zoo.register_model(paper="test", input_size=8)(functools.partial(zoo.resnet18))


def test_a_builder_registered_again_is_measured_again():
    """model_info kept the first builder's facts after a notebook re-ran its definition
    with other arguments (its cache was never cleared)."""
    import keras

    def build(classes):
        inputs = keras.Input((8, 8, 3))
        pooled = keras.layers.GlobalAveragePooling2D()(inputs)
        return keras.Model(inputs, keras.layers.Dense(classes)(pooled), name="remade")

    try:
        for classes in (3, 5):
            def remade(classes=classes, **kwargs):
                return build(classes)

            zoo.register_model(paper="test", input_size=8)(remade)
            assert zoo.model_info("remade")["params"] == 3 * classes + classes
    finally:
        registry._MODELS.pop("remade")


def test_the_catalogs_arguments_are_the_builders():
    """`zoo info` and the commands' typo checks read the built-in builders' arguments from
    the catalog, without Keras: they are the builders' own."""
    from zoo import registry

    for name in registry.CATALOG:
        entry = registry.get_entry(name)
        assert registry.CATALOG[name]["arguments"] == tuple(entry.arguments), name
