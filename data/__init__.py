"""Dataset pipelines, the embedded offline dataset, preprocessing and augmentation."""
