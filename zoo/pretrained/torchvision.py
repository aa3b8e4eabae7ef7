"""torchvision-layout ResNet and VGG state dicts into the zoo's ResNets and VGGs.

The keys are torchvision's (``conv1.weight``, ``bn1.running_mean``,
``layer3.1.downsample.0.weight``, ``fc.bias``), which timm's ``tv_in1k`` ResNets share.
Convolution kernels go from PyTorch's (out, in, height, width) to Keras' (height, width,
in, out), the classifier is transposed, and each BatchNorm's weight, bias, running mean and
running variance become gamma, beta, moving mean and moving variance (eps 1e-5 in both).
"""

import contextlib
import functools
import json
import os
import re
import shlex
import warnings

import numpy as np

from safeio.checks import MissingPackage, UserError
from zoo.pretrained._fit import chw_to_hwc, hwc_to_chw, is_a, set_if_it_fits

IGNORED = ("num_batches_tracked",)  # a BatchNorm counter, not a weight


def read_state_dict(path):
    """A ``{key: float32 numpy array}`` dict from a ``.safetensors`` or ``.pth`` file (or
    ``.pt``, ``.pth.tar``, ``.bin``, ``.ckpt``: PyTorch's), its keys without the prefixes
    that ``DataParallel`` (``module.``), ``torch.compile`` (``_orig_mod.``) or a Lightning
    module (``model.``) put on every one."""
    return _without_wrapper_prefix(_read(os.fspath(path)))


WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.")


def _without_wrapper_prefix(state):
    """``state`` without the prefixes on all its keys, however nested (a compiled model
    wrapped in DistributedDataParallel: ``module._orig_mod.``), as timm's
    ``clean_state_dict`` undoes them."""
    stripped = True
    while state and stripped:
        stripped = False
        for prefix in WRAPPER_PREFIXES:
            if all(key.startswith(prefix) for key in state):
                state = {key[len(prefix):]: value for key, value in state.items()}
                stripped = True
    return state


# Where training scripts keep the state dict in their checkpoints: timm's train.py and
# most scripts (state_dict), torchvision's references (model), PyTorch's tutorial on
# general checkpoints (model_state_dict); and the averaged (EMA) copy saved beside it.
WRAPPERS = ("state_dict", "model", "model_state_dict")
EMA_WRAPPERS = ("state_dict_ema", "model_ema", "ema_state_dict")


def _read(path):
    # An OS fault (a file this user may not read) is the OS's, with the path: it was
    # reported as a truncated file or a missing one (safetensors' FileNotFoundError).
    with open(path, "rb"):
        pass
    if path.lower().endswith(".safetensors"):
        import ml_dtypes  # noqa: F401  (Keras' own: NumPy reads bfloat16 files with it)
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            tensors = load_file(path)
        except (SafetensorError, OSError, ValueError) as error:
            raise UserError(f"{path} is not a readable safetensors file ({error}); it may "
                            "be truncated or another format.") from None
        except (AttributeError, TypeError) as error:  # a float8 type NumPy does not have
            raise UserError(f"{path} holds tensors of a type NumPy cannot read ({error}); "
                            "save them as float32, float16 or bfloat16.") from None
        return {k: np.asarray(v, "float32") for k, v in tensors.items()}
    try:
        import torch
    except ImportError:
        raise MissingPackage(
            f"Reading {path} needs PyTorch, which is not installed here. Convert it once "
            f"where torch is installed:  {conversion_command(path)}  and pass the "
            ".safetensors file instead.") from None
    try:
        with _training_checkpoint_globals(torch):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 torch raises many kinds; its text advises
        # weights_only=False, which would run the file's code: never repeat that advice.
        raise UserError(f"{path} is not a readable PyTorch state dict "
                        f"({type(error).__name__}): it is truncated, another format, or "
                        "holds objects other than tensors (a whole model, pickled: save "
                        "torch.save(model.state_dict(), path) instead). Nothing was "
                        "loaded.") from None
    state = _unwrapped(state, path)
    if not isinstance(state, dict):
        raise UserError(f"{path} holds a {type(state).__name__}, not a state dict.")
    not_tensors = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise UserError(f"{path} is not a state dict of tensors: key {not_tensors[0]!r} holds "
                        f"a {type(state[not_tensors[0]]).__name__}.")
    return {k: v.detach().float().numpy() for k, v in state.items()}


def _training_checkpoint_globals(torch):
    """What ``torch.load(weights_only=True)`` may rebuild besides tensors: the
    ``argparse.Namespace`` of the command-line arguments that timm's and torchvision's
    training scripts save in their checkpoints (timm's own loader allows it so). Plain
    attributes: no code of the file runs."""
    import argparse

    serialization = getattr(torch, "serialization", None)
    if not hasattr(serialization, "safe_globals"):  # (before PyTorch 2.5: no such list)
        return contextlib.nullcontext()
    return serialization.safe_globals([argparse.Namespace])


def _unwrapped(state, path):
    """The state dict a training checkpoint holds under one of :data:`WRAPPERS`; where it
    holds an averaged copy too (timm's ``state_dict_ema``, torchvision's ``model_ema``),
    a warning says which one was read (the raw weights, as timm's validate.py reads)."""
    for wrapper in WRAPPERS:
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            averaged = [k for k in EMA_WRAPPERS if isinstance(state.get(k), dict)]
            if averaged:
                warnings.warn(
                    f"{path} holds the raw weights ({wrapper!r}), read here, and their "
                    f"moving average ({averaged[0]!r}). To read the average instead, save it "
                    f"alone: torch.save(checkpoint[{averaged[0]!r}], 'ema.pth').",
                    stacklevel=2)
            return state[wrapper]
    return state


TORCH_SUFFIXES = (".pth.tar", ".pth", ".pt", ".bin", ".ckpt")  # PyTorch's files


def converted_name(path):
    """The ``.safetensors`` file :func:`conversion_command` writes beside a PyTorch file:
    ``r18.pth`` -> ``r18.safetensors``, ``model_best.pth.tar`` -> ``model_best.safetensors``."""
    for suffix in TORCH_SUFFIXES:
        if path.lower().endswith(suffix):
            return path[:-len(suffix)] + ".safetensors"
    return os.path.splitext(path)[0] + ".safetensors"


def conversion_command(path):
    """The shell command that writes ``path`` (a PyTorch state dict, or a training
    checkpoint holding one under one of :data:`WRAPPERS`) as the ``.safetensors`` file
    beside it, where PyTorch is installed (run where ``path``, as given, names the file).

    >>> command = conversion_command("runs/r18.pth")
    >>> 'torch.load("runs/r18.pth",' in command, 'save_file(d, "runs/r18.safetensors")' in command
    (True, True)
    """
    quoted = functools.partial(json.dumps, ensure_ascii=False)  # (an emoji: two halves)
    code = ("import argparse, torch; from safetensors.torch import save_file; "
            "getattr(torch.serialization, \"add_safe_globals\", print)([argparse.Namespace]); "
            f"d = torch.load({quoted(path)}, map_location=\"cpu\", weights_only=True); "
            f"d = next((d[k] for k in {quoted(WRAPPERS)} if isinstance(d.get(k), dict)), "
            "d); "
            f"save_file(d, {quoted(converted_name(path))})")
    return f"python -c {shlex.quote(code)}"


_BLOCK = re.compile(r"conv(\d+)_block(\d+)_(\d+)_(conv|bn)$")


def torchvision_name(layer_name):
    """The torchvision module name of a zoo ResNet layer, or None for a layer without one.

    >>> torchvision_name("conv4_block2_3_bn"), torchvision_name("conv3_block1_0_conv")
    ('layer3.1.bn3', 'layer2.0.downsample.0')
    """
    if layer_name in ("conv1_conv", "conv1_bn"):
        return "conv1" if layer_name.endswith("conv") else "bn1"
    if layer_name == "predictions":
        return "fc"
    match = _BLOCK.match(layer_name)
    if not match:
        return None
    stage, block, index, kind = match.groups()
    prefix = f"layer{int(stage) - 1}.{int(block) - 1}"
    if index == "0":  # the projection shortcut
        return f"{prefix}.downsample.{0 if kind == 'conv' else 1}"
    return f"{prefix}.{kind}{index}"


def _keras_values(kind, tensors, module):
    if kind == "conv":
        return [tensors[f"{module}.weight"].transpose(2, 3, 1, 0)]
    if kind == "conv_bias":  # VGG's convolutions have biases, ResNet's none
        return [tensors[f"{module}.weight"].transpose(2, 3, 1, 0), tensors[f"{module}.bias"]]
    if kind == "bn":
        return [tensors[f"{module}.{k}"] for k in ("weight", "bias", "running_mean",
                                                  "running_var")]
    return [tensors[f"{module}.weight"].T, tensors[f"{module}.bias"]]


def _kind(layer):
    name = next((n for n in ("Conv2D", "BatchNormalization", "Dense") if is_a(layer, n)), None)
    if name == "Conv2D" and layer.use_bias:
        return "conv_bias"
    return {"Conv2D": "conv", "BatchNormalization": "bn", "Dense": "dense"}.get(name)


def _keys(kind, module):
    suffixes = {"conv": ("weight",), "conv_bias": ("weight", "bias"),
                "dense": ("weight", "bias"),
                "bn": ("weight", "bias", "running_mean", "running_var")}[kind]
    return [f"{module}.{s}" for s in suffixes]


def load_resnet(model, path):
    """Set a zoo ResNet's weights from a torchvision-layout state dict file.

    Every weight of the model must come from the file, and every tensor of the file must
    have a place (the classifier's may be left over when the model has no top); otherwise
    the missing and unexpected keys are named. Shapes are checked before anything is set.
    """
    return _load(model, path, torchvision_name, ("fc.",),
                 "A torchvision ResNet state dict fits the zoo ResNet of the same depth with "
                 "width=1.0, stem='imagenet' and relu (and classes=1000 with the top).")


def vgg_module_names(model):
    """``{zoo layer name: torchvision module}`` for a zoo VGG: torchvision numbers the
    ``features`` in order, every convolution, BatchNorm, ReLU and max-pool taking one index,
    and the classifier's linear layers are ``classifier.0``, ``.3`` and ``.6``.

    >>> import zoo
    >>> names = vgg_module_names(zoo.vgg11_bn(input_shape=(32, 32, 3), width=0.125))
    >>> names["block1_conv1"], names["block1_conv1_bn"], names["block2_conv1"], names["fc2"]
    ('features.0', 'features.1', 'features.4', 'classifier.3')
    """
    import keras

    names, index = {}, 0
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.BatchNormalization)):
            names[layer.name] = f"features.{index}"
            index += 1
            fused = isinstance(layer, keras.layers.Conv2D) and layer.activation is not None \
                and layer.activation.__name__ != "linear"
            index += fused  # its ReLU
        elif isinstance(layer, (keras.layers.Activation, keras.layers.MaxPooling2D)) and (
                layer.name.startswith("block")):
            index += 1
    names.update(fc1="classifier.0", fc2="classifier.3", predictions="classifier.6")
    return names


def _vgg_fc1(model, values):
    """torchvision flattens the block-5 map channels first (C, H, W), Keras channels last
    (H, W, C): fc1's rows are permuted to Keras' order."""
    grid = model.get_layer("flatten").input.shape[1:]
    return [chw_to_hwc(values[0].T, grid).T, values[1]]  # values[0]: already transposed


def load_vgg(model, path):
    """Set a zoo VGG's weights from a torchvision-layout state dict file (``vgg16``,
    ``vgg16_bn``, ...), as :func:`load_resnet` does for ResNets. With the top, the input
    must give torchvision's 7x7 block-5 map (224x224 to 255x255): torchvision pools any
    other size to 7x7 first, which the zoo's Flatten does not."""
    names = vgg_module_names(model)
    return _load(model, path, names.get, ("classifier.",),
                 "A torchvision VGG state dict fits the zoo VGG of the same depth and "
                 "batch_norm with width=1.0 and relu (and classes=1000 and a 224x224 input "
                 "with the top; at another size, build it with include_top=False, "
                 "pooling='avg' and give it zoo.fine_tune for a new head).",
                 adapt={"fc1": _vgg_fc1})


def _load(model, path, module_of, top_prefixes, advice, adapt=None):
    """Load a torchvision-layout state dict: ``module_of(layer name)`` is the layer's
    torchvision module (None: it has none); ``adapt[layer name](model, values)`` reorders a
    layer's converted values; ``top_prefixes``: keys that may be left over without a top."""
    tensors = {k: v for k, v in read_state_dict(path).items()
               if not k.endswith(IGNORED)}
    plan, missing, wrong_shape, claimed = [], [], [], set()
    for layer in model.layers:
        if not layer.weights:
            continue
        kind, module = _kind(layer), module_of(layer.name)
        if kind is None or module is None:
            missing.append(f"{layer.name} (no torchvision counterpart)")
            continue
        keys = _keys(kind, module)
        claimed.update(keys)  # the model's, even where the layer is not set
        absent = [k for k in keys if k not in tensors]
        if absent:
            missing.extend(absent)
            continue
        expected_rank = {"conv": 4, "conv_bias": 4, "dense": 2, "bn": 1}[kind]
        bad_rank = [k for k in keys[:1] if tensors[k].ndim != expected_rank]
        if bad_rank:  # a transpose would fail with numpy's "axes don't match array"
            wrong_shape.extend(f"{k}: file {tensors[k].shape}, a {expected_rank}-D tensor "
                               f"expected for {layer.name}" for k in bad_rank)
            continue
        values = _keras_values(kind, tensors, module)
        if adapt and layer.name in adapt:
            if values[0].shape[0] != layer.get_weights()[0].shape[0]:
                wrong_shape.append(f"{keys[0]}: file {tensors[keys[0]].shape}, model "
                                   f"{layer.get_weights()[0].shape} (transposed)")
                continue
            values = adapt[layer.name](model, values)
        for weight, value, key in zip(layer.get_weights(), values, keys):
            if weight.shape != value.shape:
                wrong_shape.append(f"{key}: file {tensors[key].shape} -> {value.shape}, "
                                   f"model {weight.shape}")
        plan.append((layer, values, keys))
    has_top = "predictions" in {layer.name for layer in model.layers}
    unexpected = [k for k in tensors
                  if k not in claimed and (has_top or not k.startswith(top_prefixes))]
    return set_if_it_fits(
        model, path, [(layer, values) for layer, values, _ in plan], missing, unexpected,
        wrong_shape, f"{len(tensors)} tensors in the file", advice)


def _classifier_inside(model):
    """The network a wrapper around it holds (``with_preprocessing``'s pixel layer and the
    zoo model, whose weights it shares): the one nested model, where no other layer has
    weights."""
    import keras

    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if len(nested) == 1 and not any(layer.weights for layer in model.layers
                                    if layer is not nested[0]):
        return _classifier_inside(nested[0])
    return model


def state_dict(model):
    """A zoo ResNet's or VGG's weights as a torchvision-layout state dict of NumPy arrays:
    the inverse of :func:`load_resnet` / :func:`load_vgg`, to save with
    ``safetensors.numpy.save_file`` and load in torchvision
    (``model.load_state_dict({k: torch.from_numpy(v) ...})``) or back here.

    Example:

    >>> import zoo
    >>> sorted(state_dict(zoo.resnet18()))[:2]
    ['bn1.bias', 'bn1.running_mean']
    """
    model = _classifier_inside(model)
    is_vgg = "block1_conv1" in {layer.name for layer in model.layers}
    module_of = vgg_module_names(model).get if is_vgg else torchvision_name
    without = [layer.name for layer in model.layers if layer.weights
               and (_kind(layer) is None or module_of(layer.name) is None)]
    if without:
        raise UserError(
            f"{model.name} has layers with weights but no torchvision counterpart "
            f"({', '.join(without[:5])}{', ...' if len(without) > 5 else ''}): state_dict "
            "converts the zoo's ImageNet ResNets and VGGs with ReLU.")
    state = {}
    for layer in model.layers:
        kind, module = _kind(layer), module_of(layer.name)
        if not layer.weights:
            continue
        values = layer.get_weights()
        if kind in ("conv", "conv_bias"):
            values = [values[0].transpose(3, 2, 0, 1), *values[1:]]
        elif kind == "dense":
            kernel = values[0].T
            if is_vgg and layer.name == "fc1":  # back to torchvision's (C, H, W) order
                kernel = hwc_to_chw(kernel, model.get_layer("flatten").input.shape[1:])
            values = [kernel, values[1]]
        for key, value in zip(_keys(kind, module), values):
            state[key] = np.ascontiguousarray(value, "float32")
    return state
