"""Image folders in the TFDS ``ImageFolder`` layout: ``root/split/class_name/image.jpg``.

The files are scanned in Python so that a bad file is named before training starts
(``tf.io.decode_image`` fails mid-epoch without saying which file it was reading).
"""

import os
import re
import time
import warnings

import tensorflow as tf

from safeio import streams
from safeio.checks import UserError, check_choice, check_positive_int

# (.jfif and .jpe: JPEG files as Windows and browsers save them, once left out unnamed)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jfif", ".jpe", ".png", ".gif", ".bmp")
# Images TensorFlow's decode_image cannot read: named in a warning, never silently left out.
OTHER_IMAGE_EXTENSIONS = (".tif", ".tiff", ".webp", ".heic", ".jp2", ".ppm", ".pgm", ".exr")
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")
BAD_IMAGE_CHOICES = ("raise", "skip")
VERIFY_CHOICES = ("header", "decode", None)
# PIL's MAX_IMAGE_PIXELS: a 12000x12000 PNG of 140 KB decodes to 432 MB of pixels (and
# several times that on the way), so sizes are read from the headers and checked first.
MAX_PIXELS = 89_478_485
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(f):
    f.seek(2)
    while True:
        byte = f.read(1)
        while byte and byte != b"\xff":
            byte = f.read(1)
        while byte == b"\xff":
            byte = f.read(1)
        if not byte:
            return None
        marker = byte[0]
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:
            continue  # markers without a length
        length = int.from_bytes(f.read(2), "big")
        if marker in _JPEG_SOF:
            f.read(1)  # sample precision
            height, width = int.from_bytes(f.read(2), "big"), int.from_bytes(f.read(2), "big")
            return width, height
        if length < 2:
            return None
        f.seek(length - 2, 1)


def _skip_sub_blocks(f):
    """Past a GIF's data sub-blocks (each a length byte and that many bytes; 0 ends them);
    returns how many held data."""
    count = 0
    while True:
        length = f.read(1)
        if not length or not length[0]:
            return count
        f.seek(length[0], 1)
        count += 1


def gif_frames(f):
    """``(width, height)`` of each frame of the GIF file ``f`` (opened in binary), from the
    frames' own descriptors, as giflib, which TensorFlow decodes with, reads them; it
    stops where the blocks do (the trailer, or bytes that are no block). As giflib's
    ``DGifSlurp``, an extension whose first sub-block is the terminator is followed by one
    more chain of sub-blocks (read by the spec, 4 bytes hid a 3000x3000 frame)."""
    f.seek(6)
    screen = f.read(7)
    if len(screen) == 7 and screen[4] & 0x80:  # a global colour table
        f.seek(3 << ((screen[4] & 7) + 1), 1)
    frames = []
    while True:
        block = f.read(1)
        if block == b"\x21":  # an extension: its label, then its sub-blocks
            f.read(1)
            if not _skip_sub_blocks(f):  # (giflib then reads another chain)
                _skip_sub_blocks(f)
        elif block == b"\x2c":  # an image: left, top, width, height, flags
            descriptor = f.read(9)
            if len(descriptor) < 9:
                return frames
            frames.append((int.from_bytes(descriptor[4:6], "little"),
                           int.from_bytes(descriptor[6:8], "little")))
            if descriptor[8] & 0x80:  # a local colour table
                f.seek(3 << ((descriptor[8] & 7) + 1), 1)
            f.read(1)  # the LZW minimum code size
            _skip_sub_blocks(f)
        else:
            return frames


def decoded_pixels(path):
    """The pixels decoding the image file ``path`` holds, from its header, or None where
    the header does not say: width x height, and for a GIF, whose frames TensorFlow
    decodes all, their pixels together (the first frame is drawn on a canvas as wide and
    as high as the largest ones: of that size too, if larger)."""
    read = _read_header(path)
    return None if read is None else read[1]


def header_size(path):
    """``(width, height)`` read from an image file's header without decoding it, or None
    where the header does not say. A GIF's is the size TensorFlow decodes it to: as wide
    and as high as its widest and highest frames (its "logical screen", which may say
    10x10 of a 9500x9500 frame, is not read).

    Example:

    >>> header_size("photo.jpg")   # doctest: +SKIP
    (500, 375)
    """
    read = _read_header(path)
    return None if read is None else read[0]


def _read_header(path):
    """``(header_size(path), decoded_pixels(path))`` from one reading of the file, or None
    where the header does not say."""
    size, frames = None, []
    with open(path, "rb") as f:
        head = f.read(26)
        if head.startswith(b"\x89PNG"):
            size = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
        elif head.startswith(b"GIF"):
            frames = gif_frames(f)
            size = ((max(w for w, _ in frames), max(h for _, h in frames)) if frames else
                    # (cut short before its first frame: what its screen says)
                    (int.from_bytes(head[6:8], "little"), int.from_bytes(head[8:10], "little")))
        elif head.startswith(b"BM"):
            size = (abs(int.from_bytes(head[18:22], "little", signed=True)),
                    abs(int.from_bytes(head[22:26], "little", signed=True)))
        elif head.startswith(b"\xff\xd8\xff"):
            size = _jpeg_size(f)
    if size is None:
        return None
    return size, max(size[0] * size[1], sum(w * h for w, h in frames))


def _truncated(path, head, size):
    """Whether a file whose header is an image's lacks the marker its format ends with:
    a truncated download or copy. (A JPEG may carry data after its end marker, so callers
    decode a suspect file before calling it bad.)"""
    with open(path, "rb") as f:
        f.seek(max(0, size - 12))
        tail = f.read()
    if head.startswith(b"\xff\xd8\xff"):
        return not tail.endswith(b"\xff\xd9")
    if head.startswith(b"\x89PNG"):
        return not tail.endswith(b"IEND\xaeB`\x82")
    if head.startswith(b"GIF"):
        return not tail.endswith(b";")
    return int.from_bytes(head[2:6], "little") > size  # BMP: its header gives its size


def op_message(err):
    """A TensorFlow op error's first line without the op's internal names: ``{{function_node
    __wrapped__DecodeImage_device_...}} Unknown image file format`` and ``Unknown image file
    format [Op:DecodeImage] name:`` -> ``Unknown image file format``."""
    line = err.message.splitlines()[0] if err.message else type(err).__name__
    line = re.sub(r"\s*\[Op:\w+\](\s*name:.*)?$", "", re.sub(r"^\{\{.*?\}\}\s*", "", line))
    return line.strip() or type(err).__name__


# What TensorFlow's C++ decoders print to stderr of a file they fail on (libjpeg's own
# lines, the op's failure): the problem returned for the file says it in one line instead.
_DECODE_NOISE = re.compile(
    r"^(Improper call to JPEG library in state \d+|Corrupt JPEG data: .*"
    r"|Premature end of JPEG file|Not a JPEG file: .*|Invalid JPEG file structure: .*"
    r"|Bogus .*|Unsupported JPEG .*|Unsupported marker type 0x[0-9a-f]+"
    r"|JPEG datastream contains no image|Empty JPEG image.*"
    r"|(Huffman|Quantization) table 0x[0-9a-f]+ was not defined"
    r"|[IWE]\d{4} [\d:.]+\s+\d+ local_rendezvous\.cc:\d+\] Local rendezvous is aborting "
    r"with status: .*"
    # TensorFlow's own decoder's ("Premature end of JPEG data. Stopped at line 0/40"), and
    # absl's line before the first C++ log of a process, where that is one of these
    r"|[IWE]\d{4} [\d:.]+\s+\d+ jpeg_mem\.cc:\d+\] .*"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to "
    r"STDERR)$")


def _decode_problem(path):
    return decode_problem(tf.io.read_file(os.fsencode(path)))  # (bytes: a non-UTF-8 name)


def decode_problem(encoded):
    """Why TensorFlow cannot decode the image bytes ``encoded`` (``"cannot be decoded
    (...)"``), or None if it can; what its decoders print of a failure stays off stderr.

    Example:

    >>> decode_problem(b"\\xff\\xd8\\xff\\xe0 not a whole jpeg")
    'cannot be decoded (jpeg::Uncompress failed. Invalid JPEG data or crop window.)'
    """
    problem = None
    with streams.descriptor_filtered(lambda line: problem is not None
                                     and bool(_DECODE_NOISE.match(line))):
        try:
            tf.io.decode_image(encoded, channels=3, expand_animations=False)
        except tf.errors.OpError as err:
            problem = f"cannot be decoded ({op_message(err)})"
    return problem


def image_problem(path, verify="header", max_pixels=MAX_PIXELS):
    """Why ``path`` is not a usable image, in a few words (``"empty file"``, ``"truncated:
    ..."``), or None if it is: the check :func:`scan` makes of every file.

    Example:

    >>> image_problem("notes.txt")   # doctest: +SKIP
    'not a JPEG, PNG, GIF or BMP image'
    """
    return _problem(path, verify, max_pixels)


def _problem(path, verify, max_pixels=MAX_PIXELS):
    """Why ``path`` is not a usable image, or None if it is."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as err:
        return f"unreadable ({err.strerror})"
    if not head:
        return "empty file"
    if not head.startswith(_MAGIC):
        return "not a JPEG, PNG, GIF or BMP image"
    if verify and head.startswith(b"BM"):
        problem = _bmp_problem(path)
        if problem:
            return problem
    dimensions, pixels = (_read_header(path) if max_pixels else None) or (None, None)
    if pixels and pixels > max_pixels:
        counted = (f" = {pixels:,} pixels" if pixels == dimensions[0] * dimensions[1] else
                   f", {pixels:,} pixels in its frames together")  # (a GIF's, all decoded)
        return f"too large: {dimensions[0]}x{dimensions[1]}{counted}, above " \
               f"max_pixels={max_pixels:,}"
    if verify == "decode" or (verify == "header" and _truncated(path, head, size)):
        problem = _decode_problem(path)
        if problem and verify == "header":
            problem = f"truncated: no end-of-image marker, and it {problem}"
        return problem
    return None


# A BMP's colour masks (compression 3, BITFIELDS: red, green, blue at bytes 54 to 66,
# after a 40-byte header or inside a larger one) in the one order TensorFlow's decoder
# assumes, which ignores them.
_BMP_MASKS = (0x00FF0000, 0x0000FF00, 0x000000FF)
_SWAPPED_BMP = ("a BMP whose colour masks are not in blue, green, red order, which "
                "TensorFlow decodes with its colours swapped: convert it to PNG")
_PALETTE_BMP = ("a BMP with a colour palette, which TensorFlow decodes as grey palette "
                "indices: convert it to PNG")


def _bmp_problem(path):
    """What TensorFlow's BMP decoder cannot read right, from the header: bit depths other
    than 8, 24 and 32 and compressed pixels (refused mid-epoch, naming no file), an 8-bit
    colour palette (decoded as grey palette indices, without a word) and colour masks in
    another order (decoded with red and blue swapped). :func:`bmp_misread` is the same
    rule in TensorFlow's ops, for the export's endpoint of encoded images."""
    with open(path, "rb") as f:
        head = f.read(66)
        header = int.from_bytes(head[14:18], "little")
        bits = int.from_bytes(head[28:30], "little")
        compression = int.from_bytes(head[30:34], "little") if header >= 40 else 0
        if bits not in (8, 24, 32) or compression not in (0, 3):
            how = f"{bits}-bit" + (f", compression {compression}" if compression not in (0, 3)
                                   else "")
            return f"a BMP ({how}) that TensorFlow does not decode: convert it to PNG"
        masks = tuple(int.from_bytes(head[at:at + 4], "little") for at in (54, 58, 62))
        if compression == 3 and masks != _BMP_MASKS:
            return _SWAPPED_BMP
        if bits == 8:
            colours = (int.from_bytes(head[46:50], "little") if header >= 40 else 0) or 256
            f.seek(14 + header)
            palette = f.read(4 * min(colours, 256))
            if any(palette[4 * i:4 * i + 3] != bytes([i, i, i])
                   for i in range(min(colours, 256))):
                return _PALETTE_BMP
    return None


def bmp_misread(encoded):
    """Whether the bytes ``encoded`` are a BMP that TensorFlow's decoder reads wrongly
    without an error (a colour palette, or colour masks in another order): the rule of
    :func:`_bmp_problem`, in TensorFlow's ops (a SavedModel's graph). A bool tensor.

    Example:

    >>> bool(bmp_misread(tf.constant(b"BM" + bytes(64))))  # (masks of zeros, no palette)
    False
    """
    def misread():
        data = tf.strings.join([encoded, tf.constant(bytes(1200))])  # (short files)

        def field(offset, size):  # a little-endian unsigned integer
            raw = tf.io.decode_raw(tf.strings.substr(data, offset, size), tf.uint8)
            return tf.reduce_sum(tf.cast(raw, tf.int64)
                                 * tf.constant([1, 256, 65536, 16777216][:size], tf.int64))

        header, bits = field(14, 4), field(28, 2)
        described = header >= 40  # (an OS/2 header holds neither field)
        none = tf.constant(0, tf.int64)
        compression = tf.where(described, field(30, 4), none)
        masks = tf.stack([field(54, 4), field(58, 4), field(62, 4)])
        swapped = (compression == 3) & tf.reduce_any(masks != tf.constant(_BMP_MASKS,
                                                                            tf.int64))

        def grey_indices():
            most = tf.constant(256, tf.int64)
            colours = tf.where(described, field(46, 4), none)
            colours = tf.minimum(tf.where(colours == 0, most, colours), most)
            raw = tf.io.decode_raw(tf.strings.substr(data, 14 + header, 4 * colours),
                                   tf.uint8)
            entries = tf.reshape(raw, (-1, 4))[:, :3]
            ramp = tf.cast(tf.range(tf.shape(entries)[0]), tf.uint8)[:, tf.newaxis]
            return tf.reduce_any(entries != ramp)

        palette = tf.cond(bits == 8, grey_indices, lambda: tf.constant(False))
        return swapped | palette

    is_bmp = tf.strings.substr(encoded, 0, 2) == "BM"
    return tf.cond(is_bmp, misread, lambda: tf.constant(False))


def splits(root):
    """The split names (sub-folders) of an image-folder root. Hidden folders (``.name``,
    such as Jupyter's ``.ipynb_checkpoints``) are skipped, as Keras'
    ``image_dataset_from_directory`` skips them: they are never splits or classes."""
    return sorted(d for d in os.listdir(root)
                  if not d.startswith(".") and os.path.isdir(os.path.join(root, d)))


def class_folders(root):
    """The classes of an image folder: the union of the class folders of every split that
    holds images, sorted, so a class has the same label in every split (as
    ``tfds.folder_dataset.ImageFolder`` numbers them), even when a split lacks some classes.
    The sub-folders of a folder whose sub-folders hold no image file at all (a ``docs`` of
    stylesheets, a Mac zip's ``__MACOSX`` of hidden ``._`` files) are no classes: they
    shifted every label."""
    classes = set()
    for split in splits(root):
        names = splits(os.path.join(root, split))
        if any(_holds_images(os.path.join(root, split, name)) for name in names):
            classes.update(names)
    return sorted(classes)


def _holds_images(folder):
    """Whether ``folder`` holds an image file (by its name, not hidden) at any depth: the
    first one found ends the walk (a class folder's own files come first)."""
    for _, _, names in os.walk(folder):
        if any(name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")
               for name in names):
            return True
    return False


def _check_class_names(names, root, split_dir):
    names = list(names)
    if not names or len(set(names)) != len(names) or not all(isinstance(n, str) for n in names):
        raise UserError(f"`class_names` must be distinct folder names; received {names!r}.")
    unknown = sorted(set(splits(split_dir)) - set(names))
    if unknown:
        raise UserError(
            f"Class folder(s) {unknown} in {split_dir} are not in `class_names` {names} "
            f"(the image folder {root} has classes {class_folders(root)}).")
    return names


def check_options(on_bad_image, verify, max_pixels):
    """The scan's options, each one line when it is none of the allowed."""
    check_choice(on_bad_image, BAD_IMAGE_CHOICES, "on_bad_image")
    check_choice(verify, VERIFY_CHOICES, "verify")
    check_positive_int(max_pixels, "max_pixels", allow_none=True, what=" (None: no limit)")


def scan(root, split, on_bad_image="raise", verify="header", class_names=None,
         max_pixels=MAX_PIXELS, allow_empty=False):
    """List ``(paths, labels, class_names)`` of one split.

    The labels number the classes of every split together (:func:`class_folders`), or follow
    the order of ``class_names`` when given (as keras' ``image_dataset_from_directory``
    does; every class folder of the split must be in it).

    ``verify="header"`` (the default) checks each file's format signature, and that it
    ends with its format's end marker; a file that does not (a truncated download) is
    decoded once to decide. 10,000 JPEGs of 32x32 take 0.55 s so, against 4.5 s to decode
    them all (``verify="decode"``, ``benchmarks/folder_scan.py``): 8x faster, and decoding
    costs more as images grow while this check does not; None trusts the files. A bad
    file raises a ``ValueError`` naming it, or with
    ``on_bad_image="skip"`` is left out with a warning naming it. So is an image whose
    header gives more than ``max_pixels`` pixels (PIL's 89,478,485 by default; None: no
    limit; a GIF's frames together, :func:`decoded_pixels`), checked before anything
    decodes it (and, as every check, not with ``verify=None``, which opens no file; a link
    to nothing is named even then). A split of no images raises a ``ValueError`` unless
    ``allow_empty``.

    Within one process a scan is not made again while the folders and the split's files
    are unchanged (the modification times of the root, its splits and their class
    folders, which adding, removing or renaming an image changes, and the time and size
    of each file of the split, which rewriting one in place changes: one ``stat`` a file;
    what changed in the last 3 s is scanned each time, as a change within one clock tick
    would not show); ``zoo train`` loads a split up to three times, and ImageNet's 1.28
    million files take a minute a scan. One scan is kept per set of arguments; its
    warnings are given again.

    Example:

    >>> paths, labels, classes = scan("flowers", "train")  # doctest: +SKIP
    """
    check_options(on_bad_image, verify, max_pixels)
    class_names = None if class_names is None else list(class_names)  # (an iterator: once)
    key = (os.path.abspath(root), split, on_bad_image, verify,
           None if class_names is None else tuple(class_names), max_pixels, allow_empty)
    started = time.time_ns()
    fingerprint = _fingerprint(root, split)
    fingerprint_before, made = _SCANS.get(key, (None, None))
    if made is None or fingerprint is None or fingerprint != fingerprint_before:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                found = _scan(root, split, on_bad_image, verify, class_names, max_pixels,
                              allow_empty)
        except UserError:  # its warnings first (the files not read of a split of "no images")
            for warning in caught:
                warnings.warn(warning.message, warning.category, stacklevel=2)
            raise
        made = found, [(w.message, w.category) for w in caught]
        _SCANS.pop(key, None)
        # Kept only when every folder's time is settled: a change within the same clock
        # tick as the last one (4 ms on many kernels, 2 s on FAT) would not change it.
        if fingerprint is not None and max(t for _, t, _ in fingerprint) < started - _SETTLED_NS:
            _SCANS[key] = fingerprint, made
    (paths, labels, names), said = made
    for message, category in said:
        warnings.warn(message, category, stacklevel=2)
    return list(paths), list(labels), list(names)


_SCANS = {}  # scan's arguments -> (the folders' and files' times, (result, warnings))
_SETTLED_NS = 3 * 10**9  # a folder changed less recently than this is not scanned again


def _fingerprint(root, split):
    """``(path, modification time in ns, size)`` of ``root``, its sub-folders and every
    split's sub-folders (a split's first images change the classes: :func:`class_folders`),
    and of the files in ``split``'s class folders (a file rewritten in place changes no
    folder's time: a bad image mended, or a good one damaged, kept its old verdict); or
    None where one cannot be read (then the scan says why). One stat a file: far less than
    the scan's reading of each file's header and end."""
    try:
        folders = [root] + [os.path.join(root, d) for d in os.listdir(root)]
        for split_dir in [f for f in folders[1:] if os.path.isdir(f)]:
            folders += [os.path.join(split_dir, d) for d in os.listdir(split_dir)]
        folders = [f for f in sorted(folders) if os.path.isdir(f)]
        entries = [(f, os.stat(f).st_mtime_ns, 0) for f in folders]
        split_dir = os.path.join(root, split)
        for class_dir in [f for f in folders if os.path.dirname(f) == split_dir]:
            with os.scandir(class_dir) as found:
                for entry in sorted(found, key=lambda e: e.name):
                    if entry.is_file():
                        info = entry.stat()
                        entries.append((entry.path, info.st_mtime_ns, info.st_size))
        return tuple(entries)
    except OSError:
        return None


def _scan(root, split, on_bad_image, verify, class_names, max_pixels, allow_empty):
    """:func:`scan`, made (its arguments checked there)."""
    available = splits(root)
    if split not in available:
        cased = [name for name in available if name.lower() == split.lower()]
        commands = ("train", "validation", "val", "valid", "test")  # (the names they read)
        raise UserError(
            f"Unknown split {split!r} in image folder {root}: it has "
            f"{', '.join(map(repr, available)) or 'no split sub-folders'} "
            + ("(expected layout: root/split/class_name/image.jpg)." if not cased else
               f"(split names are case-sensitive: rename {cased[0]}/ to {split}/, the name "
               f"zoo's commands look for, or load split={cased[0]!r})." if split in commands
               else f"(split names are case-sensitive: load split={cased[0]!r}).")
        )
    split_dir = os.path.join(root, split)
    names = (class_folders(root) if class_names is None else
             _check_class_names(class_names, root, split_dir))
    paths, labels, bad, unread = [], [], [], []
    for label, class_name in enumerate(names):
        class_dir = os.path.join(split_dir, class_name)
        if not os.path.isdir(class_dir):
            continue  # this split has no example of the class
        for file_name in sorted(os.listdir(class_dir)):
            if file_name.startswith("."):  # macOS' ._x.png, an editor's: hidden, as folders
                continue
            path = os.path.join(class_dir, file_name)
            if os.path.isdir(path):
                unread.extend(_images_below(path))  # only class_name/image.jpg is read
                continue
            if file_name.lower().endswith(OTHER_IMAGE_EXTENSIONS):
                unread.append(path)
            if not file_name.lower().endswith(IMAGE_EXTENSIONS):
                continue
            if os.path.islink(path) and not os.path.exists(path):  # (not a file: no word)
                bad.append(f"{path}: a broken link (to {os.readlink(path)}, which is not "
                           "there: a git-annex or DVC file not fetched?)")
                continue
            if not os.path.isfile(path):  # a fifo or a device: never opened
                continue
            problem = _problem(path, verify, max_pixels if verify else None)
            if problem is None:
                paths.append(path)
                labels.append(label)
            else:
                bad.append(f"{path}: {problem}")
    unread += sorted(  # beside the class folders, in none
        os.path.join(split_dir, f) for f in os.listdir(split_dir)
        if f.lower().endswith(IMAGE_EXTENSIONS + OTHER_IMAGE_EXTENSIONS)
        and not f.startswith(".") and os.path.isfile(os.path.join(split_dir, f)))
    if unread:
        warnings.warn(
            f"{len(unread)} image file(s) in {split_dir} are not read: only JPEG, PNG, GIF "
            "and BMP files directly inside a class folder are (root/split/class_name/"
            f"image.jpg): {_first(unread)}", stacklevel=2)
    if bad and on_bad_image == "raise":
        raise UserError(
            f"{len(bad)} bad image file(s) in {split_dir}: {_first(bad)}. Remove them, or "
            "leave them out with a warning: on_bad_image='skip' (--on-bad-image skip).")
    if bad:
        warnings.warn(f"Skipped {len(bad)} bad image file(s): {_first(bad)}", stacklevel=2)
    if not paths and not allow_empty:
        raise UserError(
            f"No images in {split_dir}: expected class sub-folders holding "
            f"{', '.join(IMAGE_EXTENSIONS)} files."
        )
    return paths, labels, names


def _first(items, count=5):
    """``a; b; c`` for the first ``count`` items, ``and N more`` after them."""
    shown = "; ".join(items[:count])
    return shown + (f"; and {len(items) - count} more" if len(items) > count else "")


def _images_below(folder):
    """The image files anywhere below ``folder``."""
    return sorted(os.path.join(root, name) for root, _, names in os.walk(folder)
                  for name in names if name.lower().endswith(IMAGE_EXTENSIONS
                                                             + OTHER_IMAGE_EXTENSIONS))


def decode(path, channels=3):
    """Read and decode one image file to float32 RGB in [0, 255] (grayscale and RGBA too)."""
    return tf.cast(decode_image(tf.io.read_file(path), channels), tf.float32)


def decode_image(encoded, channels=3):
    """The bytes of one JPEG, PNG, GIF (its first frame) or BMP image as uint8 pixels; a
    JPEG as PIL, and so torchvision, decodes it: with libjpeg's accurate integer DCT.
    TensorFlow's default DCT, the fast one, put pixels 1 grey level from PIL's on average
    (up to 8; red and blue 1.1 and 1.3 darker), which published weights were not scored on.

    Example:

    >>> import io, numpy as np, PIL.Image
    >>> pixels = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    >>> jpeg = io.BytesIO()
    >>> PIL.Image.fromarray(pixels).save(jpeg, "JPEG", quality=90)
    >>> decoded = decode_image(jpeg.getvalue()).numpy()
    >>> bool((decoded == np.asarray(PIL.Image.open(jpeg))).all())
    True
    """
    return tf.cond(tf.io.is_jpeg(encoded),
                   lambda: tf.io.decode_jpeg(encoded, channels=channels,
                                             dct_method="INTEGER_ACCURATE"),
                   lambda: tf.io.decode_image(encoded, channels=channels,
                                              expand_animations=False))
