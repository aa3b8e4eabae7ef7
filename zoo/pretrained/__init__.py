"""Pretrained weights from the files users already have: torchvision's (and timm's
``tv_in1k``) ResNets, and the Caffe reference AlexNet and GoogLeNet, converted exactly.

A builder's ``weights`` argument takes, besides None and a ``.weights.h5`` file:

- a torchvision-layout state dict for the ResNets and VGGs: ``.safetensors`` (read with the
  safetensors package's NumPy API, no PyTorch needed; timm's ``resnet50.tv_in1k`` files
  have this layout) or ``.pth`` (when PyTorch is importable);
- a ``.caffemodel`` for AlexNet (``bvlc_alexnet``), GoogLeNet (``bvlc_googlenet``) and
  VGG-16/19 (the authors' ``VGG_ILSVRC_16_layers.caffemodel``), parsed without Caffe;
- ``"imagenet"`` or a named entry (``"tv_in1k"``, ``"resnet50.tv2_in1k"``, ``"bvlc"``):
  the published file, looked up in the local cache (``$ZOO_WEIGHTS``, else
  ``~/.keras/models/zoo/``) by file name and checked against its published hash. Nothing is
  downloaded behind the user's back: :func:`download` fetches a file (``urllib``, with a
  timeout), and a missing file's error says which file to put where.

Each entry carries its preprocessing (:func:`preprocess_input`) and the accuracy its
publisher reports. Example:

>>> sorted(n for n in list_weights() if n.startswith("resnet50"))
['resnet50.tv2_in1k', 'resnet50.tv_in1k']
>>> get_weights("googlenet", "imagenet").file_name
'bvlc_googlenet.caffemodel'
"""

import dataclasses
import http.client
import os
import re
import shutil
import tempfile

from safeio import file_hash, make_directory
from safeio.checks import MissingFile, MissingPackage, UserError, check_choice
from zoo.pretrained.imagenet import apply_preprocessing, decode_predictions, imagenet_classes

# torchvision's ImageClassification preset: RGB in [0, 1], ImageNet mean and std.
TORCHVISION = {"resize": 256, "crop": 224, "scale": 1 / 255, "channel_order": "RGB",
               "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
# The Caffe reference models: images warped to 256x256 (Caffe's ImageNet databases, made by
# convert_imageset with OpenCV's bilinear resize, not antialiased), the centre crop, BGR in
# [0, 255] minus the ILSVRC-2012 mean. bvlc_googlenet's train_val.prototxt subtracts
# mean_value 104, 117, 123; bvlc_alexnet subtracts the mean image
# (imagenet_mean.binaryproto, not part of the weights file), whose channel means these
# are, as Caffe's own classification example uses them.
CAFFE_GOOGLENET = {"resize": 256, "warp": True, "crop": 224, "channel_order": "BGR",
                   "mean": (104.0, 117.0, 123.0)}
CAFFE_ALEXNET = {"resize": 256, "warp": True, "crop": 227, "channel_order": "BGR",
                 "mean": (104.00698793, 116.66876762, 122.67891434)}
# bvlc_alexnet is the two-tower network, its LRN Caffe's (k=1, alpha/n) and across all
# channels of conv1 and conv2, its max-pools Caffe's (rounding up), as Caffe ran it.
# The VGG authors' Caffe models: BGR in [0, 255] minus the channel means of their
# deploy prototxt (keras.applications' "caffe" mode), shorter side 256 and centre crop here.
CAFFE_VGG = {"resize": 256, "crop": 224, "channel_order": "BGR",
             "mean": (103.939, 116.779, 123.68)}
CAFFE_ALEXNET_ARCHITECTURE = {"towers": 2, "lrn_params": "caffe", "lrn_across_towers": True,
                              "ceil_mode": True}


@dataclasses.dataclass(frozen=True)
class WeightsEntry:
    """One published weights file and what it takes to use it.

    ``file_hash`` is the published hash (``hash_algorithm`` ``"sha256"`` or ``"sha1"``),
    whole or, as in torchvision's file names, its first hex digits. ``format`` is
    ``"torchvision"`` or ``"caffe"``. ``architecture`` holds the builder arguments the file
    needs (bvlc_alexnet: two towers, Caffe's LRN). ``accuracy`` is what the publisher
    reports, ``(top-1, top-5)`` in percent on the ILSVRC-2012 validation set, one centre crop.
    """

    name: str
    model: str
    file_name: str
    url: str
    file_hash: str
    hash_algorithm: str
    format: str
    preprocessing: dict
    accuracy: tuple = None
    source: str = ""
    architecture: dict = dataclasses.field(default_factory=dict)

    @property
    def tag(self):
        return self.name.partition(".")[2]


def _torchvision(model, file_name, top1, top5, tag="tv_in1k", preprocessing=TORCHVISION,
                 weights_enum="IMAGENET1K_V1"):
    enum = (f"ResNet{model[6:]}" if model.startswith("resnet")
            else model.upper())  # VGG16, VGG16_BN
    return WeightsEntry(
        name=f"{model}.{tag}", model=model, file_name=file_name,
        url=f"https://download.pytorch.org/models/{file_name}",
        file_hash=file_name.rsplit("-", 1)[1].split(".")[0], hash_algorithm="sha256",
        format="torchvision", preprocessing=preprocessing, accuracy=(top1, top5),
        source=f"torchvision.models.{enum}_Weights.{weights_enum}")


_ENTRIES = {}
_DEFAULTS = {}  # model -> the entry "imagenet" means


def register_weights(entry, default=False):
    """Add a :class:`WeightsEntry` (your own published file, say); ``default=True`` makes
    it what ``weights="imagenet"`` means for its model. Returns the entry."""
    if not isinstance(entry, WeightsEntry):
        raise TypeError(f"register_weights takes a WeightsEntry; received "
                        f"{type(entry).__name__}.")
    check_choice(entry.format, sorted(FORMATS), "format")
    if entry.hash_algorithm not in ("sha256", "sha1"):
        raise UserError("`hash_algorithm` must be 'sha256' or 'sha1'; received "
                        f"{entry.hash_algorithm!r}.")
    _check_entry(entry)
    _ENTRIES[entry.name] = entry
    if default:
        _DEFAULTS[entry.model] = entry.name
    return entry


_ADDRESSES = "http(s)://, ftp:// or file://"


def _is_address(url):
    return isinstance(url, str) and url.lower().startswith(
        ("http://", "https://", "ftp://", "file://"))


def _check_entry(entry):
    """An entry its model's builders can use, whose file stays in the cache folder: one line
    for each field that could never work (it was listed, then refused as unknown)."""
    from zoo import registry

    if entry.model not in registry.list_models():  # (a known one: its module not imported)
        registry.get_entry(entry.model)  # an unknown model: one line with the closest name
    model, _, tag = entry.name.partition(".")
    if model != entry.model or not tag:
        raise UserError(f"A WeightsEntry's `name` must be 'MODEL.TAG' with MODEL its `model` "
                        f"(as 'resnet50.tv_in1k'): {entry.model}.TAG; received "
                        f"{entry.name!r}.")
    if not isinstance(entry.file_hash, str) or not re.fullmatch(r"[0-9a-fA-F]{6,}",
                                                                entry.file_hash):
        raise UserError(f"A WeightsEntry's `file_hash` must be hex digits, the published "
                        f"{entry.hash_algorithm} whole or its first 6 or more; received "
                        f"{entry.file_hash!r}.")
    name = entry.file_name
    if (not isinstance(name, str) or name in ("", ".", "..") or os.path.basename(name) != name
            or "\\" in name or not _has_suffix(name, FORMATS[entry.format])):
        raise UserError(f"A WeightsEntry's `file_name` must be a file name (no folder) ending "
                        f"in {', '.join(FORMATS[entry.format])} for format "
                        f"{entry.format!r}; received {name!r}.")


def _has_suffix(path, suffixes):
    """Whether ``path`` ends in one of ``suffixes``, case aside (R18.SAFETENSORS)."""
    return str(path).lower().endswith(suffixes)


# The files' suffixes: torchvision's state dicts as torchvision, timm (.pth.tar), Hugging
# Face (pytorch_model.bin) and Lightning (.ckpt) save them.
FORMATS = {"torchvision": (".safetensors", ".pth", ".pt", ".pth.tar", ".bin", ".ckpt"),
           "caffe": (".caffemodel",)}
FAMILY_FORMAT = {"resnet": ("torchvision",), "vgg": ("torchvision", "caffe"),
                 "alexnet": ("caffe",), "googlenet": ("caffe",)}


def suffixes(family):
    """The converted-file suffixes a model family loads (``()`` for none)."""
    return sum((FORMATS[f] for f in FAMILY_FORMAT.get(family, ())), ())


for _model, _file, _top1, _top5 in (
        ("resnet18", "resnet18-f37072fd.pth", 69.758, 89.078),
        ("resnet34", "resnet34-b627a593.pth", 73.314, 91.420),
        ("resnet50", "resnet50-0676ba61.pth", 76.130, 92.862),
        ("resnet101", "resnet101-63fe2227.pth", 77.374, 93.546),
        ("resnet152", "resnet152-394f9c45.pth", 78.312, 94.046)):
    register_weights(_torchvision(_model, _file, _top1, _top5), default=True)
# torchvision's VGGs (their IMAGENET1K_V1 files; accuracies as torchvision reports them).
for _model, _file, _top1, _top5 in (
        ("vgg11", "vgg11-8a719046.pth", 69.020, 88.628),
        ("vgg13", "vgg13-19584684.pth", 69.928, 89.246),
        ("vgg16", "vgg16-397923af.pth", 71.592, 90.382),
        ("vgg19", "vgg19-dcbb9e9d.pth", 72.376, 90.876),
        ("vgg11_bn", "vgg11_bn-6002323d.pth", 70.370, 89.810),
        ("vgg13_bn", "vgg13_bn-abd245e5.pth", 71.586, 90.374),
        ("vgg16_bn", "vgg16_bn-6c64b313.pth", 73.360, 91.516),
        ("vgg19_bn", "vgg19_bn-c79401a0.pth", 74.218, 91.842)):
    register_weights(_torchvision(_model, _file, _top1, _top5), default=True)
register_weights(_torchvision("resnet50", "resnet50-11ad3fa6.pth", 80.858, 95.434,
                              tag="tv2_in1k", preprocessing={**TORCHVISION, "resize": 232},
                              weights_enum="IMAGENET1K_V2"))
register_weights(WeightsEntry(
    name="alexnet.bvlc", model="alexnet", file_name="bvlc_alexnet.caffemodel",
    url="http://dl.caffe.berkeleyvision.org/bvlc_alexnet.caffemodel",
    file_hash="9116a64c0fbe4459d18f4bb6b56d647b63920377", hash_algorithm="sha1",
    format="caffe", preprocessing=CAFFE_ALEXNET, accuracy=(57.1, 80.2),
    source="Caffe model zoo, models/bvlc_alexnet/readme.md",
    architecture=CAFFE_ALEXNET_ARCHITECTURE), default=True)
register_weights(WeightsEntry(
    name="googlenet.bvlc", model="googlenet", file_name="bvlc_googlenet.caffemodel",
    url="http://dl.caffe.berkeleyvision.org/bvlc_googlenet.caffemodel",
    file_hash="405fc5acd08a3bb12de8ee5e23a96bec22f08204", hash_algorithm="sha1",
    format="caffe", preprocessing=CAFFE_GOOGLENET, accuracy=(68.7, 88.9),
    source="Caffe model zoo, models/bvlc_googlenet/readme.md"), default=True)


def list_weights(model=None):
    """The names of the known weights entries (of one model, if given)."""
    return sorted(n for n, e in _ENTRIES.items() if model is None or e.model == model)


def is_named(weights):
    """Whether ``weights`` names an entry (``"imagenet"``, ``"tv_in1k"``, ...) rather than
    a file: ``"imagenet"``, an entry's name or tag whatever the working directory holds (a
    folder called ``imagenet`` beside a notebook is not the weights), else a string that is
    not an existing path and has no weights-file suffix."""
    if not isinstance(weights, str):
        return False
    if weights == "imagenet" or weights in _ENTRIES or weights in {
            entry.tag for entry in _ENTRIES.values()}:
        return True
    if os.path.exists(weights):
        return False
    return not _has_suffix(weights, (".h5", ".keras", *sum(FORMATS.values(), ())))


def get_weights(model, weights):
    """The :class:`WeightsEntry` that ``weights`` (``"imagenet"``, a tag such as
    ``"tv2_in1k"`` or a full name such as ``"resnet50.tv2_in1k"``) names for ``model``."""
    if weights == "imagenet" and model in _DEFAULTS:
        return _ENTRIES[_DEFAULTS[model]]
    name = weights if "." in weights else f"{model}.{weights}"
    if name in _ENTRIES and _ENTRIES[name].model == model:
        return _ENTRIES[name]
    known = (["imagenet"] if model in _DEFAULTS else []) + [
        _ENTRIES[n].tag for n in list_weights(model)]
    raise UserError(
        f"{model} has no weights named {weights!r}; known: {known or 'none'}. `weights` may "
        "also be None or the path to a local file (.weights.h5, .safetensors/.pth for "
        "ResNets and VGGs, .caffemodel for AlexNet, GoogLeNet and VGG).")


def cache_dir():
    """Where named weights are looked up: ``$ZOO_WEIGHTS``, else ``~/.keras/models/zoo``
    (under ``$KERAS_HOME`` when set, as Keras' own cache)."""
    if os.environ.get("ZOO_WEIGHTS"):
        return os.path.expanduser(os.environ["ZOO_WEIGHTS"])
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(keras_home, "models", "zoo")


def check_hash(path, entry):
    """Raise ``ValueError`` unless ``path``'s hash starts with the entry's published one."""
    actual = _hash_mismatch(path, entry)
    if actual is not None:
        raise UserError(
            f"{path} is not {entry.name}'s published file: its {entry.hash_algorithm} is "
            f"{actual}, expected {_expected_hash(entry, actual)}. "
            f"It is damaged or another file; replace it with {entry.url}.")


def _hash_mismatch(path, entry):
    """``path``'s hash where it does not start with the entry's published one, else None."""
    actual = file_hash(path, entry.hash_algorithm)
    return None if actual.startswith(entry.file_hash.lower()) else actual


def _expected_hash(entry, actual):
    """The published hash as shown: ``"f37072fd..."`` where only its start is published."""
    return entry.file_hash + ("..." if len(entry.file_hash) < len(actual) else "")


def weights_file(entry):
    """The checked local path of a named entry's file, or a ``FileNotFoundError`` that says
    which file to put where and where it is published."""
    path = os.path.join(cache_dir(), entry.file_name)
    if os.path.lexists(path) and not os.path.isfile(path):
        raise UserError(f"weights {entry.name!r} need the file {path}, but "
                        + ("a directory" if os.path.isdir(path) else "something that is not "
                           "a regular file") + " is there. Move it aside and put the file "
                        f"there (published at {entry.url}).")
    if not os.path.isfile(path):
        raise MissingFile(
            f"weights {entry.name!r} need the file {entry.file_name}, not found in {cache_dir()}. "
            f"It is published at {entry.url} ({entry.source}). Put it at {path} (or point "
            f"$ZOO_WEIGHTS at the folder holding it), or run "
            f"zoo.pretrained.download({entry.name!r}) where that address is reachable.")
    check_hash(path, entry)
    return _readable_here(path, entry)


def _readable_here(path, entry):
    """``path``, or where PyTorch is not installed and ``path`` is PyTorch's file (a
    ``.pth``; ``.pt``, ``.bin``, ...), the ``.safetensors`` file converted from it beside
    it (the published hash is the PyTorch file's, checked)."""
    import importlib.util

    from zoo.pretrained.torchvision import TORCH_SUFFIXES, conversion_command, converted_name

    if not _has_suffix(path, TORCH_SUFFIXES) or importlib.util.find_spec("torch") is not None:
        return path
    converted = converted_name(path)
    if os.path.isfile(converted):
        return converted

    raise MissingPackage(
        f"weights {entry.name!r}: {path} is a PyTorch file, and PyTorch is not installed "
        f"here. Convert it once where torch is installed:  "
        f"{conversion_command(path)}  then weights={entry.tag!r} reads "
        f"{os.path.basename(converted)} beside it.")


def download(name, origin=None, cache=None, timeout=60):
    """Fetch a named entry's file into the cache and check its published hash; returns the
    path. A file that fails the check never reaches the cache.

    Args:
        name: the entry's full name, e.g. ``"resnet50.tv_in1k"``.
        origin: another address to fetch from (a mirror, or ``file://`` for a local copy);
            default the published URL.
        cache: the folder to fill; default :func:`cache_dir`.
        timeout: seconds the server may stay silent (a connection, or a read) before the
            download fails; without it a network that drops packets waited for ever. (This
            call's own, as ``urllib``'s ``urlopen`` takes it: other threads' sockets keep
            theirs.)
    """
    if name not in _ENTRIES:
        raise UserError(f"Unknown weights {name!r}; known: {list_weights()}.")
    entry = _ENTRIES[name]
    source = entry.url if origin is None else origin
    if not _is_address(source):
        raise UserError((f"`origin` must be an {_ADDRESSES} address (file:// for a local "
                         f"copy: file:///path/to/{entry.file_name}); received {origin!r}.")
                        if origin is not None else
                        f"{entry.name}'s url is no {_ADDRESSES} address ({entry.url!r}): "
                        "give origin= where its file is.")
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not timeout > 0:
        raise UserError(f"`timeout` must be a number of seconds above 0; received {timeout!r}.")
    folder = cache or cache_dir()
    make_directory(folder)
    target = os.path.join(folder, entry.file_name)
    staging = tempfile.mkdtemp(prefix=".download-", dir=folder)
    fetched = os.path.join(staging, entry.file_name)
    try:
        try:
            _fetch(source, fetched, timeout)
        except (OSError, ValueError, http.client.HTTPException) as error:  # (URLError and
            # HTTPError are OSErrors; IncompleteRead and BadStatusLine http.client's)
            reason = (f"no answer within {timeout:g} s" if isinstance(error, TimeoutError)
                      or "timed out" in str(error) else str(error))
            raise UserError(f"Could not fetch {entry.name} from {source} ({reason}); nothing "
                            f"was added to {folder}. Put {entry.file_name} there by hand "
                            f"(published at {entry.url}).") from None
        actual = _hash_mismatch(fetched, entry)
        if actual is not None:
            raise UserError(f"{source} did not give {entry.name}'s published file: its "
                            f"{entry.hash_algorithm} is {actual}, expected "
                            f"{_expected_hash(entry, actual)}; nothing was added to {folder}.")
        os.replace(fetched, target)  # the same folder: atomic
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _fetch(url, path, timeout):
    """``url`` into the new file ``path``, with a progress bar where its size is known."""
    import urllib.request

    import keras

    with urllib.request.urlopen(url, timeout=timeout) as response, open(path, "xb") as out:
        size = response.headers.get("Content-Length")
        print(f"Downloading {url}")
        bar = keras.utils.Progbar(int(size) if size and size.isdigit() else None,
                                  unit_name="bytes")
        done = 0
        while chunk := response.read(1 << 20):
            out.write(chunk)
            done += len(chunk)
            bar.update(done)
        if size and size.isdigit() and done < int(size):  # (a connection closed early)
            raise OSError(f"the connection ended after {done:,} of {int(size):,} bytes")


def file_format(path):
    """``"keras"``, ``"torchvision"`` or ``"caffe"`` from a weights file's suffix."""
    path = str(path)
    if path.endswith(".weights.h5"):
        return "keras"
    for name, suffixes in FORMATS.items():
        if _has_suffix(path, suffixes):
            return name
    return None


def load_converted(model, path, family):
    """Load a torchvision state dict or a caffemodel into a freshly built zoo model."""
    fmt = file_format(path)
    if fmt == "torchvision" and family in ("resnet", "vgg"):
        from zoo.pretrained import torchvision

        (torchvision.load_resnet if family == "resnet" else torchvision.load_vgg)(model, path)
    elif fmt == "caffe" and family in ("alexnet", "googlenet", "vgg"):
        from zoo.pretrained import caffe

        caffe.load(model, path, family)
    else:
        raise UserError(f"{family} weights cannot come from a {fmt} file ({path}): ResNets "
                        "load torchvision state dicts, AlexNet and GoogLeNet caffemodels, "
                        "VGGs either.")


def preprocessing_for(path, family):
    """The preprocessing a converted file's weights take their inputs in: its entry's
    where the file is a known one (by file name), else its format's and family's."""
    stem = os.path.splitext(os.path.basename(str(path)))[0]  # (a .pth's .safetensors too)
    for entry in _ENTRIES.values():
        if os.path.splitext(entry.file_name)[0] == stem and entry.model.startswith(family):
            return entry.preprocessing
    if file_format(path) == "torchvision":
        return TORCHVISION
    return {"alexnet": CAFFE_ALEXNET, "googlenet": CAFFE_GOOGLENET}.get(family, CAFFE_VGG)


def with_preprocessing(model):
    """``model``, built with converted weights, as a model of RGB images with pixels 0-255:
    its weights' pixel transform (``/ 255``, mean and std; or BGR minus the mean) becomes
    its first layer (:class:`data.layers.PixelNormalization`), so that ``zoo.predict``,
    ``ensembles.export`` and ``zoo evaluate`` can give it images. Returns a new model of the
    same name that shares ``model``'s weights, with its class names, recording the centre
    crop (``zoo.resize_mode``: ``"crop"``).

    The geometry is then the zoo's centre crop: the shorter side to
    ``data.crop_scale(size)`` (256 for 224), then the central crop. That is torchvision's
    for its ``tv_in1k`` files; ``tv2_in1k`` was scored at 232 and the Caffe files on a
    256x256 warp, so their published accuracy needs ``zoo.preprocess_input`` (or
    ``ensembles.export(..., scale=232)`` for the former).

    Example:

    >>> model = with_preprocessing(zoo.resnet50(weights="imagenet"))  # doctest: +SKIP
    >>> zoo.predict(model, ["cat.jpg"])                               # doctest: +SKIP
    """
    import keras

    from data.layers import PixelNormalization
    from zoo.saving import copy_metadata, input_pixels, set_input_pixels, set_resize_mode

    preprocessing = input_pixels(model)
    if preprocessing is None:
        raise UserError(f"{model.name} records no converted weights' preprocessing "
                        "(zoo.input_pixels): it takes images as they are, and needs no "
                        "with_preprocessing.")
    inputs = keras.Input(model.input_shape[1:], name="image")
    normalised = PixelNormalization(
        preprocessing["mean"], preprocessing.get("std"), preprocessing.get("scale", 1.0),
        preprocessing.get("channel_order", "RGB"), name="pixel_normalization")(inputs)
    wrapped = keras.Model(inputs, model(normalised), name=model.name)
    copy_metadata(model, wrapped)
    set_input_pixels(wrapped, None)
    return set_resize_mode(wrapped, "crop")


def describe_preprocessing(preprocessing):
    """One line for people: ``"resize 256, crop 224, RGB / 255, mean (...), std (...)"``."""
    p = preprocessing
    resize = None
    if p.get("resize"):
        resize = (f"warp to {p['resize']}x{p['resize']}" if p.get("warp")
                  else f"shorter side to {p['resize']}")
    parts = [resize, f"centre crop {p['crop']}" if p.get("crop") else None,
             p.get("channel_order", "RGB") + (" / 255" if p.get("scale") == 1 / 255 else " 0-255"),
             "mean (" + ", ".join(f"{m:g}" for m in p["mean"]) + ")",
             "std (" + ", ".join(f"{m:g}" for m in p["std"]) + ")" if "std" in p else None]
    return ", ".join(part for part in parts if part)


def preprocess_input(images, weights):
    """Prepare RGB images in [0, 255] as ``weights`` were trained: torchvision's shorter
    side to 256 (232 for ``tv2_in1k``), a centre crop, then its mean/std in [0, 1]; the Caffe
    models' 256x256 warp, centre crop, BGR order minus the ILSVRC-2012 mean. Images already
    at the crop size are only normalised.

    Args:
        images: one image ``(height, width, 3)`` or a batch, RGB, values 0-255.
        weights: a full entry name (``"resnet50.tv_in1k"``, ``"alexnet.bvlc"``), or a
            :class:`WeightsEntry`.

    Example:

    >>> import numpy as np
    >>> preprocess_input(np.full((300, 400, 3), 255.0), "resnet50.tv_in1k").shape
    (224, 224, 3)
    """
    entry = weights if isinstance(weights, WeightsEntry) else _ENTRIES.get(weights)
    if entry is None:
        raise UserError(f"preprocess_input needs a weights entry name; received {weights!r}. "
                        f"Known: {list_weights()}.")
    return apply_preprocessing(images, entry.preprocessing)


__all__ = ["WeightsEntry", "cache_dir", "decode_predictions", "download", "get_weights",
           "imagenet_classes", "list_weights", "preprocess_input", "register_weights",
           "with_preprocessing"]

# The converters, as the README names them (zoo.pretrained.torchvision.state_dict): NumPy
# only, so `import zoo` stays light.
from zoo.pretrained import caffe, torchvision  # noqa: E402,F401
