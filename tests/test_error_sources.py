"""Errors that name their source (issue 30 item 4): a NaN/inf in a file-backed split names the file
and the record. (A checkpoint directory that is a file, refused before training: tests/test_lock.py.)"""

import numpy as np
import pytest

from jaxcnn.data import records
from jaxcnn.data.errors import DataError
from jaxcnn.data.idx import write_idx
from jaxcnn.data.records import writer
from jaxcnn.data.sources import load_idx_dataset


@pytest.fixture
def nan_records(tmp_path, monkeypatch):
    """A prepared float32 split whose record 5 (of shard 1) holds a NaN: a file changed after it was
    checked and written (the writer refuses NaN, so it is let through here)."""
    monkeypatch.setattr(writer, "record_array", lambda images, what: np.asarray(images, np.float32))
    x = np.full((8, 4, 4, 1), 0.5, np.float32)
    x[5, 1, 2, 0] = np.nan
    out = str(tmp_path / "prep")
    records.prepare_arrays(out, {"train": (x, np.arange(8) % 2), "test": (x[:2], np.array([0, 1]))},
                           ["a", "b"], shard_size=4, progress=False)
    return out


def test_a_nan_in_a_prepared_split_names_the_file_and_the_record(nan_records):
    split = records.load_prepared(nan_records, "train")
    np.testing.assert_array_equal(split[np.arange(4)], np.full((4, 4, 4, 1), 0.5, np.float32))  # shard 0 is fine
    with pytest.raises(DataError, match=r"train-00001-of-00002\.array_record: record 1 \(train example 5\) "
                                        r"holds nan \(NaN/inf in the inputs\)"):
        split[np.array([4, 5])]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["numpy", "tf"])
def test_fit_on_a_prepared_split_with_a_nan_stops_naming_the_file(nan_records, backend):
    from jaxcnn.train import Trainer
    from tests.helpers import Tiny

    split = records.load_prepared(nan_records, "train")
    trainer = Trainer(Tiny(2), (4, 4, 1), data_backend=backend)
    with pytest.raises(DataError, match=r"train-00001-of-00002\.array_record: record 1 \(train example 5\)"):
        trainer.fit(split, split.labels, batch_size=4, verbose=0, road="pipeline")


def test_a_nan_in_a_float_idx_file_names_the_file(tmp_path):
    x = np.zeros((3, 2, 2), np.float32)
    x[2, 0, 1] = np.inf
    for prefix in ("train", "t10k"):
        write_idx(str(tmp_path / f"{prefix}-images-idx3-ubyte"), x)
        write_idx(str(tmp_path / f"{prefix}-labels-idx1-ubyte"), np.zeros(3, np.uint8))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: image 2 holds inf"):
        load_idx_dataset(str(tmp_path))

