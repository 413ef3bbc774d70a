"""Prepared datasets: splits written once as ArrayRecord shards, read back by index.

    jaxcnn prepare image_folder:photos/ --out prepared/photos --image-size 128
    trainer.fit(load_prepared("prepared/photos", "train"), epochs=...)   # or load_dataset("prepared:DIR")

A prepared folder holds, per split, shards `SPLIT-00000-of-00004.array_record` (one record per
example: its raw HxWxC values, uint8 pixels or float32 arrays such as spectrograms, so reading
needs no decoder), `SPLIT-labels.npy`, and `manifest.json` (format, class names, image shape and
dtype, per split the example count and per file its record count, size and sha256). The
manifest is written last: a folder without one is an unfinished preparation, which `prepare`
continues (each shard is marked done, in `.prepare/`, only after its file is complete and
renamed into place).

`PreparedSplit` is a random-access source: `len()`, `shape`, `dtype`, `labels`, and
`split[indices]` -> NHWC of the stored dtype. The input pipeline gathers each batch's indices
from it exactly as from an array, so the epoch order (a permutation of seed and epoch), mid-epoch resume and each host's slice of
a global batch are the same as for in-memory arrays: each process reads only its own records.

Modules: `manifest` (file names, the manifest, checksums), `reader` (PreparedSplit,
PreparedDataset, load_prepared, the `prepared:DIR` source), `writer` (write_shard,
prepare_arrays, prepare: resumable). Every name is importable from `jaxcnn.data.records` as before.
"""

from jaxcnn.data.records.manifest import (
    FORMAT,
    MANIFEST,
    PROGRESS_DIR,
    RECORD_DTYPES,
    SPLITS,
    VERSION,
    read_manifest,
    sha256_file,
)
from jaxcnn.data.records.reader import ARRAY_LIMIT_BYTES, PreparedDataset, PreparedSplit, is_source, load_prepared
from jaxcnn.data.records.writer import prepare, prepare_arrays, record_array, write_shard

__all__ = [
    "ARRAY_LIMIT_BYTES",
    "FORMAT",
    "MANIFEST",
    "PROGRESS_DIR",
    "RECORD_DTYPES",
    "SPLITS",
    "VERSION",
    "PreparedDataset",
    "PreparedSplit",
    "is_source",
    "load_prepared",
    "prepare",
    "prepare_arrays",
    "read_manifest",
    "record_array",
    "sha256_file",
    "write_shard",
]
