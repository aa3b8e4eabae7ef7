"""Keep TensorFlow's C++ start-up lines off the terminal, and nothing else.

Importing TensorFlow and finding its devices prints lines that say nothing about the
user's work: absl's "All log messages before absl::InitializeLog()", the CUDA stub and the
failed ``cuInit`` on a machine without a GPU, the cuDNN/cuFFT/cuBLAS factory
registrations, the CPU-instruction and oneDNN notes. C++ writes them to file descriptor
2, below Python, so :func:`tensorflow_started_quietly` points that descriptor at a
temporary file while TensorFlow starts, then writes back every line that is not one of
those. Later warnings and errors reach the terminal as they are (but for TensorFlow's
"triggered tf.function retracing" count of the commands' own models); INFO lines do not.
"""

import os
import re

from safeio import streams

_NOISE = re.compile(
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to "
    r"STDERR$"
    r"|^[IWE]\d{4} [\d:.]+\s+\d+ (cudart_stub|cpu_feature_guard|cuda_dnn|cuda_fft"
    r"|cuda_blas|port|computation_placer)\.cc:\d+\]"
    # The GPU's sources say things that matter ("Cannot dlopen some GPU libraries ...
    # Skipping registering GPU devices"): only their INFO lines, and the failed cuInit of a
    # machine without a GPU, are noise.
    r"|^I\d{4} [\d:.]+\s+\d+ (cuda_platform|cuda_executor|gpu_device)\.cc:\d+\]"
    r"|^E\d{4} [\d:.]+\s+\d+ cuda_platform\.cc:\d+\] failed call to cuInit: "
    r"|^To enable the following instructions: .* in other operations, rebuild TensorFlow "
    r"with the appropriate compiler flags\.$"
    r"|^(TF-TRT Warning: Could not find TensorRT|oneDNN custom operations are on)"
)


def is_noise(line):
    """Whether ``line`` is one of TensorFlow's start-up lines."""
    return bool(_NOISE.match(line))


def descriptor_filtered(fd=2):
    """Everything written to ``fd`` inside goes through :func:`is_noise` on the way out."""
    return streams.descriptor_filtered(is_noise, fd)


def _not_retracing(record):
    """False for TensorFlow's "N out of the last M calls to <function ...> triggered
    tf.function retracing": a command that scores several models makes each its own
    predict function, which that count reads as retracing; the user can do nothing."""
    return "triggered tf.function retracing" not in record.getMessage()


def tensorflow_started_quietly():
    """Import TensorFlow and find its devices (where the start-up lines come from) with
    those lines filtered out, and keep TensorFlow's C++ INFO lines (Grappler's "Starting
    new session" in an ONNX export, say) off for good, unless ``TF_CPP_MIN_LOG_LEVEL`` says
    otherwise: its warnings and errors still show, but for the retracing count's."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # read when TensorFlow is imported
    with descriptor_filtered():
        import tensorflow as tf

        tf.config.list_physical_devices()
    if _not_retracing not in tf.get_logger().filters:
        tf.get_logger().addFilter(_not_retracing)
