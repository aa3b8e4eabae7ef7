"""``data.pipeline``: the paper's data pipeline for one dataset at one input size.

What ``zoo train``/``diagnose``/``search`` and ``zoo demo`` share: the training split
through the augmentation (random crops of images loaded at the larger scale when the
augmentation crops), evaluation splits at the input size or as the centre crop of that
larger scale, and the training set's pixel statistics, computed once on the evaluation
view of the training split.
"""

import dataclasses

from data import augment as augment_ops
from data.datasets import info as dataset_info
from data.datasets import load
from data.preprocess import compute_statistics, normalized_input
from data.tta import crop_scale
from safeio.checks import UserError, check_positive_int

# The names of a validation split, in the order looked for: TFDS', then image folders'.
VALIDATION_SPLITS = ("validation", "val", "valid")


def held_out_splits(splits):
    """The held-out splits among ``splits`` (names), validation first: ``["validation",
    "test"]`` or fewer (an image folder's ``val/`` or ``valid/`` is its validation split, as
    in ImageNet's and Kaggle's layouts)."""
    validation = [s for s in VALIDATION_SPLITS if s in splits][:1]
    return validation + [s for s in ("test",) if s in splits]


@dataclasses.dataclass
class Pipeline:
    """One dataset at one input size; make it with :func:`pipeline`."""

    dataset: str
    info: object  # data.DatasetInfo
    size: int  # the model's input: size x size
    scale: int  # with random crops: images load with this shorter side; else None
    statistics: object  # data.ImageStatistics of the training split's evaluation view
    augment: object  # (image, seed) -> image, or None
    batch_size: int
    seed: int
    data_dir: str = None
    train_split: str = "train"
    on_bad_image: str = "raise"  # image folders: "raise" or "skip" (see data.load)

    @property
    def held_out(self):
        """The held-out splits of the dataset (:func:`held_out_splits`)."""
        return held_out_splits(self.info.splits)

    @property
    def resize(self):
        """How its images become inputs, as ``zoo.train(resize=)`` records it: ``"crop"``
        (random crops to train, the centre crop to evaluate) or ``"squash"`` (whole images
        resized to the input)."""
        return "squash" if self.scale is None else "crop"

    def _sizing(self):
        return dict(image_size=self.size) if self.scale is None else dict(scale=self.scale)

    def load(self, split, shuffle=None, batch_size=None):
        """``split`` as the model is evaluated on it: at the input size, or the centre crop
        of the larger scale."""
        crop = {} if self.scale is None else dict(center_crop=self.size)
        return load(self.dataset, split, batch_size=batch_size or self.batch_size,
                    shuffle=shuffle, seed=self.seed, data_dir=self.data_dir,
                    on_bad_image=self.on_bad_image, **self._sizing(), **crop)

    def train(self, batch_size=None, drop_remainder=False):
        """The training split through the augmentation, shuffled and augmented anew each
        epoch from ``(seed, epoch)`` (see ``data.set_epoch``); ``drop_remainder``: leave
        out each epoch's last, smaller batch (keras.distribution needs batches that split
        evenly over the devices)."""
        # (shuffle named: load's default shuffles only splits named "train...", and a
        # train_split "all" or a folder's "Train" trained on batches of one class)
        return load(self.dataset, self.train_split, batch_size=batch_size or self.batch_size,
                    augment=self.augment, shuffle=True, seed=self.seed, data_dir=self.data_dir,
                    on_bad_image=self.on_bad_image, drop_remainder=drop_remainder,
                    **self._sizing())

    def input(self, normalize="standardize"):
        """A Keras input of the input size that normalises raw pixels with the training
        statistics (``data.normalized_input``): pass it as a builder's ``input_tensor``."""
        return normalized_input(self.statistics, (self.size, self.size, 3),
                                normalize=normalize)


def pipeline(dataset, size, augment="none", batch_size=64, seed=0, data_dir=None,
             train_split="train", info=None, on_bad_image="raise", statistics=None):
    """The paper's pipeline for ``dataset`` at ``size`` x ``size`` inputs.

    ``augment``: a ``data.augment`` spec (``"none"``, ``"crop"``, ``"crop+flip"``,
    ``"paper"``, ...). With ``crop``, images load at the larger scale (shorter side
    ``data.crop_scale(size)``, 256 for 224/227, then the central square): random crops of
    ``size`` to train, the centre crop to evaluate, as the paper did. Without it every
    split loads at ``size``. ``train_split`` may be sliced as TFDS slices
    (``"train[:320]"``). ``info``: the dataset's ``data.info``, if already at hand.
    ``on_bad_image``: for image folders, ``"raise"`` (naming every bad file) or ``"skip"``
    them with a warning. ``statistics``: the training split's :class:`ImageStatistics` at
    ``size``, if already at hand (a resumed run's, as it trained with);
    computed otherwise.

    Example:

    >>> p = pipeline("digits", 67, augment="crop", batch_size=32)
    >>> p.scale, p.held_out
    (77, ['validation', 'test'])
    >>> images, labels = next(iter(p.train()))
    >>> tuple(images.shape)
    (32, 67, 67, 3)
    """
    check_positive_int(size, "size")
    check_positive_int(batch_size, "batch_size")
    augment_ops.parse(augment)  # a mistake in it before the dataset is read (or downloaded)
    info = info or dataset_info(dataset, data_dir=data_dir)
    scale = crop_scale(size) if augment_ops.resize_mode(augment) == "crop" else None
    partial = Pipeline(dataset, info, size, scale, None, None, batch_size, seed, data_dir,
                       train_split, on_bad_image)
    if statistics is None:
        statistics = compute_statistics(partial.load(train_split, shuffle=False))
    elif tuple(statistics.mean_image.shape[:2]) != (size, size):
        raise UserError(
            f"The statistics given are of {statistics.mean_image.shape[0]}x"
            f"{statistics.mean_image.shape[1]} images; this pipeline's are of {size}x{size}.")
    return dataclasses.replace(partial, statistics=statistics,
                               augment=augment_ops.from_spec(augment, size, statistics))
