"""Scanning an image folder: the default check (format signature and end marker) against
decoding every file (``verify="decode"``), files/s on 10,000 small JPEGs.

Run: ``.venv/bin/python benchmarks/folder_scan.py`` (or ``make bench``).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from common import result_row  # noqa: E402
from data import folder  # noqa: E402


def _write_jpegs(root, count, size):
    rng = np.random.default_rng(0)
    for i in range(count):
        class_dir = os.path.join(root, "train", f"class{i % 10}")
        os.makedirs(class_dir, exist_ok=True)
        image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        with open(os.path.join(class_dir, f"{i:05d}.jpg"), "wb") as f:
            f.write(tf.io.encode_jpeg(image).numpy())


def _files_per_second(root, verify):
    folder._SCANS.clear()  # a scan made, not the process's record of the last one
    start = time.perf_counter()
    paths, _, _ = folder.scan(root, "train", verify=verify)
    return len(paths) / (time.perf_counter() - start)


def run(count=10_000, size=32, rounds=3):
    """One result row: files/s of the default scan and of decoding every file, each the
    median of ``rounds`` scans taken in turn (interleaved: a machine's drift or a job
    beside it falls on both), after one warm-up scan of each."""
    with tempfile.TemporaryDirectory() as root:
        _write_jpegs(root, count, size)
        speeds = {"header": [], "decode": []}
        for verify in speeds:  # warm-up: the file cache, and TensorFlow's decoder
            _files_per_second(root, verify)
        for _ in range(rounds):
            for verify in speeds:
                speeds[verify].append(_files_per_second(root, verify))
    header, decode = (statistics.median(speeds[v]) for v in ("header", "decode"))
    return result_row(f"image-folder scan, {count:,} JPEGs of {size}x{size}",
                      "signature + end marker", header, "decode every file", decode,
                      unit="files/s")


if __name__ == "__main__":  # (--help: the docstring, instead of a whole run)
    argparse.ArgumentParser(description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    print(run())
