"""Image folders in the TFDS ``ImageFolder`` layout: ``root/split/class_name/image.jpg``.

The files are scanned in Python so that a bad file is named before training starts
(``tf.io.decode_image`` fails mid-epoch without saying which file it was reading).
"""

import os
import warnings

import tensorflow as tf

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")
BAD_IMAGE_CHOICES = ("raise", "skip")
VERIFY_CHOICES = ("header", "decode", None)


def _problem(path, verify):
    """Why ``path`` is not a usable image, or None if it is."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as err:
        return f"unreadable ({err.strerror})"
    if not head:
        return "empty file"
    if not head.startswith(_MAGIC):
        return "not a JPEG, PNG, GIF or BMP image"
    if verify == "decode":
        try:
            tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as err:
            return f"cannot be decoded ({err.message.splitlines()[0]})"
    return None


def splits(root):
    """The split names (sub-folders) of an image-folder root."""
    return sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))


def scan(root, split, on_bad_image="raise", verify="header"):
    """List ``(paths, labels, class_names)`` of one split; classes sorted by name.

    ``verify="header"`` checks each file's format signature (cheap), ``"decode"`` decodes
    every file once (thorough, slow), None trusts the files. A bad file raises a
    ``ValueError`` naming it, or with ``on_bad_image="skip"`` is left out with a warning.

    Example:

    >>> paths, labels, classes = scan("flowers", "train")  # doctest: +SKIP
    """
    if on_bad_image not in BAD_IMAGE_CHOICES:
        raise ValueError(
            f"`on_bad_image` must be one of {BAD_IMAGE_CHOICES}; received {on_bad_image!r}."
        )
    if verify not in VERIFY_CHOICES:
        raise ValueError(f"`verify` must be one of {VERIFY_CHOICES}; received {verify!r}.")
    available = splits(root)
    if split not in available:
        raise ValueError(
            f"Unknown split {split!r} in image folder {root}: it has "
            f"{', '.join(map(repr, available)) or 'no split sub-folders'} (expected layout: "
            "root/split/class_name/image.jpg)."
        )
    split_dir = os.path.join(root, split)
    class_names = splits(split_dir)
    paths, labels, skipped = [], [], []
    for label, class_name in enumerate(class_names):
        class_dir = os.path.join(split_dir, class_name)
        for file_name in sorted(os.listdir(class_dir)):
            path = os.path.join(class_dir, file_name)
            if not file_name.lower().endswith(IMAGE_EXTENSIONS) or not os.path.isfile(path):
                continue
            problem = _problem(path, verify)
            if problem is None:
                paths.append(path)
                labels.append(label)
            elif on_bad_image == "skip":
                skipped.append(f"{path}: {problem}")
            else:
                raise ValueError(
                    f"Bad image file {path}: {problem}. Remove it, or pass "
                    "on_bad_image='skip' to leave bad files out with a warning."
                )
    if skipped:
        warnings.warn(f"Skipped {len(skipped)} bad image file(s):\n" + "\n".join(skipped),
                      stacklevel=2)
    if not paths:
        raise ValueError(
            f"No images in {split_dir}: expected class sub-folders holding "
            f"{', '.join(IMAGE_EXTENSIONS)} files."
        )
    return paths, labels, class_names


def decode(path, channels=3):
    """Read and decode one image file to float32 RGB in [0, 255] (grayscale and RGBA too)."""
    image = tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
    return tf.cast(image, tf.float32)
