"""Data sources and input pipelines.

Sources return numpy arrays and never need TensorFlow; `jaxcnn.data.pipeline` builds tf.data
pipelines (TensorFlow imported lazily) with a pure-numpy fallback for hosts without TF.
"""

from jaxcnn.data.errors import DataError
from jaxcnn.data.idx import read_idx, write_idx
from jaxcnn.data.sources import (
    Dataset,
    dataset_dir,
    list_datasets,
    load_dataset,
    load_idx_dataset,
    register_dataset,
    validation_split,
)

__all__ = [
    "DataError",
    "Dataset",
    "dataset_dir",
    "list_datasets",
    "load_dataset",
    "load_idx_dataset",
    "read_idx",
    "register_dataset",
    "validation_split",
    "write_idx",
]

# Loaders that register further datasets (cifar10, spoken_digits, moving_digits).
from jaxcnn.data import audio, image_folder, video  # noqa: E402,F401
