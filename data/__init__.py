"""Datasets, preprocessing, augmentation and test-time augmentation for the zoo.

Example:

>>> import data
>>> train = data.load("digits", "train", batch_size=64)   # embedded, offline
>>> data.info("digits").num_classes
10
"""

from data import augment, folder, tta
from data.datasets import (DatasetInfo, DatasetNotPreparedError, digits_arrays, from_arrays,
                           info, is_image_folder, load, set_epoch)
from data.layers import MeanSubtraction, PixelNormalization
from data.pipeline import VALIDATION_SPLITS, Pipeline, pipeline
from data.preprocess import (ImageStatistics, alexnet_preprocess, center_crop,
                             compute_statistics, eval_view, normalized_input,
                             resize_and_center_crop, resize_shorter_side)
from data.tta import crop_scale, five_crop, predict_crops, ten_crop

__all__ = [
    "DatasetInfo", "DatasetNotPreparedError", "ImageStatistics", "MeanSubtraction",
    "PixelNormalization",
    "alexnet_preprocess", "augment", "center_crop", "compute_statistics", "digits_arrays",
    "eval_view",
    "Pipeline", "folder", "from_arrays", "info", "load", "normalized_input", "pipeline",
    "predict_crops", "resize_and_center_crop", "resize_shorter_side", "set_epoch", "ten_crop",
    "tta", "crop_scale", "five_crop", "VALIDATION_SPLITS", "is_image_folder",
]
