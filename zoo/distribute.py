"""Distribution helpers: the paper's two-device training on whatever hardware is present."""

import shutil
import subprocess

import tensorflow as tf


def _gpu_memory_mb(default=4096):
    """Total memory of GPU 0 in MiB from nvidia-smi, or ``default`` if it cannot be read."""
    if shutil.which("nvidia-smi") is None:
        return default
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits", "-i", "0"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
        return int(out.strip().splitlines()[0])
    except (subprocess.SubprocessError, ValueError, IndexError, OSError):
        return default


def _split_device(physical, devices, memory_mb):
    """Split one physical device into ``devices`` logical ones (before TF initialises it)."""
    kind = physical.device_type
    current = tf.config.get_logical_device_configuration(physical)
    if current is not None and len(current) >= devices:
        return
    if kind == "GPU":
        configs = [tf.config.LogicalDeviceConfiguration(memory_limit=memory_mb)] * devices
    else:
        configs = [tf.config.LogicalDeviceConfiguration()] * devices
    try:
        tf.config.set_logical_device_configuration(physical, configs)
    except RuntimeError as err:
        raise RuntimeError(
            f"Cannot split {physical.name} into {devices} logical devices: TensorFlow has "
            "already initialised its devices. Call zoo.distribute.mirrored() before building "
            "any model or running any TensorFlow op in this process."
        ) from err


def mirrored(devices=2, gpu_memory_mb=None):
    """A ``tf.distribute.MirroredStrategy`` over ``devices`` devices, on any machine.

    With at least ``devices`` GPUs it mirrors over the first ``devices`` of them (the paper's
    two GPUs). With fewer, it splits GPU 0 (or, without GPUs, the CPU) into ``devices``
    logical devices first, so the multi-device code path always runs. Splitting must
    happen before TensorFlow initialises its devices: call this first in a process.

    Args:
        devices: number of replicas, at least 1.
        gpu_memory_mb: memory of each logical GPU when one GPU is split; default: the GPU's
            memory divided by ``devices``, less 10 %.

    Example:

    >>> strategy = mirrored(2)
    >>> strategy.num_replicas_in_sync
    2
    """
    if not isinstance(devices, int) or isinstance(devices, bool) or devices < 1:
        raise ValueError(f"`devices` must be a positive integer; received {devices!r}.")
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) >= devices:
        return tf.distribute.MirroredStrategy([f"/gpu:{i}" for i in range(devices)])
    if gpus:
        if gpu_memory_mb is None:
            gpu_memory_mb = int(_gpu_memory_mb() * 0.9) // devices
        _split_device(gpus[0], devices, gpu_memory_mb)
        logical = tf.config.list_logical_devices("GPU")
    else:
        _split_device(tf.config.list_physical_devices("CPU")[0], devices, None)
        logical = tf.config.list_logical_devices("CPU")
    # NCCL cannot all-reduce between logical devices of one physical device.
    return tf.distribute.MirroredStrategy(
        [d.name for d in logical[:devices]],
        cross_device_ops=tf.distribute.ReductionToOneDevice(),
    )
