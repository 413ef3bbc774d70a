"""Data sources and input pipelines.

Sources return numpy arrays (or, prepared records, random-access splits) and never need
TensorFlow; `jaxcnn.data.pipeline` builds tf.data pipelines (TensorFlow imported lazily) with a
pure-numpy fallback for hosts without TF.

Modules, each importing only those above it: `errors`, `idx`, `tfutil`, `base` (Dataset, the
registry, checks), the sources (`sources`: IDX/MNIST and TFDS; `image_folder`; `audio`;
`video`; `records/`: prepared folders, read and written), `augment/` (config, TF and JAX
roads, preview), `checks`, `pipeline`. Importing this package imports every source, so
`load_dataset` knows them all.
"""

from jaxcnn.data.base import Dataset, dataset_dir, list_datasets, list_sources, load_dataset, register_dataset
from jaxcnn.data.base import register_source
from jaxcnn.data.errors import DataError
from jaxcnn.data.idx import read_idx, write_idx

# Each source registers itself when imported.
from jaxcnn.data import sources, image_folder, audio, video, records  # noqa: F401,I001 - registration order
from jaxcnn.data.pipeline import validation_split
from jaxcnn.data.sources import load_idx_dataset

__all__ = [
    "DataError",
    "Dataset",
    "dataset_dir",
    "list_datasets",
    "list_sources",
    "load_dataset",
    "load_idx_dataset",
    "read_idx",
    "register_dataset",
    "register_source",
    "validation_split",
    "write_idx",
]
