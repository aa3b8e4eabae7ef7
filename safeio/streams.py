"""What native code (TensorFlow's C++, libjpeg) writes to a file descriptor, filtered.

C and C++ libraries write to file descriptor 2 below Python's ``sys.stderr``, so Python's
own redirections never see it. :func:`descriptor_filtered` points the descriptor at a
temporary file for a block, then writes back every line its ``drop`` predicate keeps.
"""

import contextlib
import os
import sys
import tempfile


@contextlib.contextmanager
def descriptor_filtered(drop, fd=2):
    """Everything written to ``fd`` inside the block reaches it afterwards, except the lines
    (without their newline) for which ``drop(line)`` is true; ``drop`` is called after the
    block, so it may depend on how the block ended.

    Example:

    >>> with descriptor_filtered(lambda line: line.startswith("noise")):
    ...     _ = os.write(2, b"noise from C\\nkept\\n")   # "kept" reaches stderr afterwards
    """
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), fd)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().decode("utf-8", "replace").splitlines(True)
                    if not drop(line.rstrip("\n"))]
            if kept:
                os.write(fd, "".join(kept).encode())
