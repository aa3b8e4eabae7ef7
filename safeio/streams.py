"""What native code (TensorFlow's C++, libjpeg) writes to a file descriptor, filtered.

C and C++ libraries write to file descriptor 2 below Python's ``sys.stderr``, so Python's
own redirections never see it. :func:`descriptor_filtered` points the descriptor at a
temporary file for a block, then writes back every line its ``drop`` predicate keeps.
"""

import contextlib
import os
import sys
import tempfile
import threading

# The descriptor is the process's: one redirection at a time (a nested one, in the same
# thread, stacks), so that none ends by restoring another's temporary file.
_REDIRECTING = threading.RLock()


@contextlib.contextmanager
def descriptor_filtered(drop, fd=2):
    """Everything written to ``fd`` inside the block reaches it afterwards, except the lines
    (without their newline) for which ``drop(line)`` is true; ``drop`` is called after the
    block, so it may depend on how the block ended.

    Example:

    >>> with descriptor_filtered(lambda line: line.startswith("noise")):
    ...     _ = os.write(2, b"noise from C\\nkept\\n")   # "kept" reaches stderr afterwards
    """
    with _REDIRECTING:
        sys.stderr.flush()
        try:
            saved = os.dup(fd)
        except OSError:  # no such descriptor (a closed stderr): nothing to filter
            yield
            return
        with tempfile.TemporaryFile() as capture:
            os.dup2(capture.fileno(), fd)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, fd)
                os.close(saved)
                capture.seek(0)
                text = capture.read().decode("utf-8", "replace")
                kept = [line for line in text.splitlines(True) if not drop(line.rstrip("\n"))]
                if kept:
                    os.write(fd, "".join(kept).encode())
